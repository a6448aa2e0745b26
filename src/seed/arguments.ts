import { parseArgs } from 'node:util';
import { HOUSEHOLD_KINDS, type HouseholdKind, type HouseholdShares } from './households.ts';
import { type PopulationOptions, PopulationOptionsError, populationOptions } from './population.ts';

export const SEED_USAGE = `npm run seed -- --members <N> [--seed <S>] [--households-share single=36,couple=22,family=32,single-parent=10]
                   [--prefix <id prefix>] [--as-of YYYY-MM-DD] [--members-only | --payer-records] [--care-years <Y>] [--care-period-months <M>]`;

export class SeedUsageError extends Error {}

function wholeNumber(text: string, name: string): number {
  if (!/^\d{1,10}$/.test(text)) throw new SeedUsageError(`${name} must be a whole number`);
  return Number(text);
}

/** `kind=weight,…`: the listed kinds take these weights, the others keep their defaults. */
function householdShares(text: string): Partial<HouseholdShares> {
  const shares: Partial<HouseholdShares> = {};
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [kind, weight, extra] = part.split('=');
    if (!HOUSEHOLD_KINDS.includes(kind as HouseholdKind)) throw new SeedUsageError(`--households-share: unknown household kind "${kind.slice(0, 40)}" (kinds: ${HOUSEHOLD_KINDS.join(', ')})`);
    if (extra !== undefined || weight === undefined || !/^\d+(\.\d+)?$/.test(weight)) throw new SeedUsageError(`--households-share: "${part.slice(0, 40)}" must be <kind>=<weight>`);
    shares[kind as HouseholdKind] = Number(weight);
  }
  return shares;
}

/** The command line of `npm run seed` as population options. */
export function parseSeedArguments(args: string[]): PopulationOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        members: { type: 'string' },
        seed: { type: 'string' },
        'households-share': { type: 'string' },
        prefix: { type: 'string' },
        'as-of': { type: 'string' },
        'members-only': { type: 'boolean', default: false },
        'payer-records': { type: 'boolean', default: false },
        'care-years': { type: 'string' },
        'care-period-months': { type: 'string' },
      },
    }));
  } catch (error) {
    throw new SeedUsageError((error as Error).message);
  }
  if (values.members === undefined) throw new SeedUsageError('--members <N> is required');
  if (values['members-only'] && values['payer-records']) throw new SeedUsageError('--payer-records needs the clinical data --members-only leaves out');
  if (values['members-only'] && (values['care-years'] !== undefined || values['care-period-months'] !== undefined)) {
    throw new SeedUsageError('--care-years and --care-period-months need the clinical data --members-only leaves out');
  }
  try {
    return populationOptions({
      members: wholeNumber(values.members, '--members'),
      ...(values.seed !== undefined ? { seed: wholeNumber(values.seed, '--seed') } : {}),
      ...(values.prefix !== undefined ? { idPrefix: values.prefix } : {}),
      ...(values['as-of'] !== undefined ? { asOf: values['as-of'] } : {}),
      ...(values['households-share'] !== undefined ? { householdShares: householdShares(values['households-share']) } : {}),
      clinical: !values['members-only'],
      payerRecords: values['payer-records'],
      ...(values['care-years'] !== undefined ? { careYears: wholeNumber(values['care-years'], '--care-years') } : {}),
      ...(values['care-period-months'] !== undefined ? { carePeriodMonths: wholeNumber(values['care-period-months'], '--care-period-months') } : {}),
    });
  } catch (error) {
    if (error instanceof PopulationOptionsError) throw new SeedUsageError(error.message);
    throw error;
  }
}
