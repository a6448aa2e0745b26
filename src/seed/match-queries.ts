import type { Coverage, Identifier, Patient } from '@medplum/fhirtypes';
import nicknameTable from '../../config/matching/nicknames.json' with { type: 'json' };
import { phoneticCodes } from '../matching/phonetic.ts';
import { foldedWords } from '../matching/text.ts';
import { type StreetAddress, drawAddress, drawPhone } from './contact.ts';
import { addYears, dayOf, isoDate, yearOf } from './dates.ts';
import type { GroundTruthMember } from './ground-truth.ts';
import { drawGivenNames, drawOtherSurname, drawSurname } from './names.ts';
import { Random, WeightedTable } from './random.ts';
import { RATES } from './rates.ts';
import { type City, type Gender, seedTables, type SeedTables } from './tables.ts';

/*
 * Labelled $member-match requests against a synthetic population, for measuring identity
 * resolution (npm run eval:matching). Each request is what a new payer would send: MemberPatient
 * (the demographics it holds, collected independently of ours, so formatted its own way) and
 * CoverageToMatch (the old card as the member reported it), plus the truth: the member the
 * request is about, or none, and for hard negatives the member it must never be matched to.
 *
 * Corruption follows FEBRL (Christen, "Probabilistic data generation for deduplication and data
 * linkage", 2005): typographical errors (insert, delete, substitute with a neighbouring key,
 * transpose), nicknames, surname changes at marriage, moves, day/month swaps, identifier
 * formatting and missing fields; several at once in the `combined` stratum. Hard negatives are
 * people a careless matcher takes for a member: twins, Jr/Sr, relatives on the member's card,
 * strangers with a common name, and people who are not members at all.
 *
 * Pure and deterministic: request i depends only on (members, seed, asOf, shares, i).
 */

export const MATCH_STRATA = [
  'exact',
  'typo',
  'nickname',
  'married-name',
  'maiden-name',
  'moved',
  'dob-swap',
  'id-format',
  'legacy-id',
  'missing-fields',
  'combined',
  'twin',
  'twin-not-member',
  'namesake',
  'household-card',
  'household-not-member',
  'common-name',
  'non-member',
] as const;

export type MatchStratum = (typeof MATCH_STRATA)[number];

/** Requests built around someone a matcher must not confuse with the person asked about. */
export const HARD_NEGATIVE_STRATA: readonly MatchStratum[] = ['twin', 'twin-not-member', 'namesake', 'household-card', 'household-not-member', 'common-name', 'non-member'];

/** Shares of the strata (normalized when drawn); hard negatives take 28%, 16% of all requests being about non-members. */
export const DEFAULT_STRATUM_SHARES: Record<MatchStratum, number> = {
  exact: 0.12,
  typo: 0.12,
  nickname: 0.07,
  'married-name': 0.05,
  'maiden-name': 0.03,
  moved: 0.08,
  'dob-swap': 0.03,
  'id-format': 0.06,
  'legacy-id': 0.02,
  'missing-fields': 0.07,
  combined: 0.07,
  twin: 0.04,
  'twin-not-member': 0.03,
  namesake: 0.03,
  'household-card': 0.05,
  'household-not-member': 0.03,
  'common-name': 0.05,
  'non-member': 0.05,
};

export type DecoyKind = 'twin' | 'namesake' | 'household' | 'common-name';

export interface LabelledMatchQuery {
  /** Position in the generated list: the request's number. */
  index: number;
  stratum: MatchStratum;
  /** What was done to the member's record, in order (`typo:family`, `nickname`, `moved`…). */
  corruptions: string[];
  memberPatient: Patient;
  coverageToMatch: Coverage;
  /** The member the request is about; absent when that person is not a member. */
  patientId?: string;
  /** A member the request must never be matched to: the twin, the namesake, the card's holder, the common-name member. */
  decoy?: { patientId: string; kind: DecoyKind };
}

export interface MatchQueryOptions {
  queries: number;
  seed: number;
  /** The population's as-of date (YYYY-MM-DD): ages of the people made up for negatives. */
  asOf: string;
  shares?: Partial<Record<MatchStratum, number>>;
}

/** The id MemberPatient carries in the request; CoverageToMatch.beneficiary refers to it (HRex). */
export const MEMBER_PATIENT_ID = '1';
const NEW_PAYER_MEMBER_SYSTEM = 'https://new-payer.example.org/member-id';
const MEMBER_TYPE = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MB' }] };
const RELATIONSHIP_SYSTEM = 'http://terminology.hl7.org/CodeSystem/subscriber-relationship';

// --- the person as the requester holds them -----------------------------------------------

/** A card as the member reported it: any of its parts may be missing. */
interface Card {
  memberId?: string;
  subscriberId?: string;
  /** Coverage.dependent: the person's number on the card. */
  dependent?: string;
  /** How the member id is written (see renderMemberId). */
  style: IdStyle;
}

type IdStyle = 'printed' | 'space' | 'dash' | 'asterisk' | 'grouped' | 'lower' | 'leading-zeros-dropped' | 'leading-zeros-added';

interface Presented {
  family: string;
  given: string[];
  suffix?: string;
  gender?: Gender;
  birthDate?: string;
  address?: StreetAddress;
  phones: string[];
  card?: Card;
  relationship?: 'self' | 'spouse' | 'child';
}

interface Context {
  rng: Random;
  tables: SeedTables;
  asOf: number;
  byId: ReadonlyMap<string, GroundTruthMember>;
  /** The household of the member the request starts from, subscriber first. */
  household: readonly GroundTruthMember[];
}

const RELATIONSHIP: Record<GroundTruthMember['role'], Presented['relationship']> = { subscriber: 'self', spouse: 'spouse', child: 'child' };

/** The member as our records show them today. */
function presentMember(member: GroundTruthMember, ctx: Context): Presented {
  const { rng, tables } = ctx;
  const name = member.names[0];
  const mobile = member.phones.find((p) => p.use === 'mobile');
  const home = member.phones.find((p) => p.use === 'home');
  // A new payer usually holds one number, the mobile when there is one.
  const phone = mobile && (!home || rng.chance(0.75)) ? mobile : home;
  return {
    family: name.family,
    given: [...name.given],
    ...(name.suffix ? { suffix: name.suffix } : {}),
    gender: member.gender,
    birthDate: member.birthDate,
    address: member.addresses[0],
    // The number we hold, one we do not (a new mobile), or none.
    phones: phone && rng.chance(0.75) ? [phone.value] : rng.chance(0.4) ? [drawPhone(rng, cityOf(tables, member.addresses[0]) ?? tables.cities.draw(rng))] : [],
    card: {
      memberId: member.memberId,
      ...(rng.chance(0.6) ? { subscriberId: member.subscriberId } : {}),
      ...(rng.chance(0.3) ? { dependent: member.personCode } : {}),
      style: 'printed',
    },
    relationship: RELATIONSHIP[member.role],
  };
}

// --- corruptions ---------------------------------------------------------------------------

const KEYBOARD = ['qwertyuiop', 'asdfghjkl', 'zxcvbnm'];

/** Keys next to `letter` on a QWERTY keyboard: the likeliest wrong key. */
function neighbourKeys(letter: string): string {
  const row = KEYBOARD.findIndex((r) => r.includes(letter));
  if (row < 0) return 'etaoinshr';
  const column = KEYBOARD[row].indexOf(letter);
  let keys = (KEYBOARD[row][column - 1] ?? '') + (KEYBOARD[row][column + 1] ?? '');
  for (const other of [KEYBOARD[row - 1], KEYBOARD[row + 1]]) if (other) keys += other.slice(Math.max(0, column - 1), column + 1);
  return keys;
}

export type TypoKind = 'insert' | 'delete' | 'substitute' | 'transpose';

/** One keystroke error at a uniformly drawn position; the result always differs from `word`. */
export function typo(word: string, rng: Random, kind: TypoKind = rng.pick(['insert', 'delete', 'substitute', 'transpose'] as const)): string {
  const letters = [...word];
  const letterAt = (i: number) => letters[i].toLowerCase();
  const cased = (i: number, letter: string) => (letters[i] === letters[i].toUpperCase() ? letter.toUpperCase() : letter);
  const positions = letters.map((_, i) => i).filter((i) => /\p{L}/u.test(letters[i]));
  if (positions.length < 3) return `${word}${word.at(-1)?.toLowerCase() ?? 'e'}`;
  const at = rng.pick(positions);
  let result: string[];
  if (kind === 'insert') {
    // A neighbouring key, or the same key struck twice.
    const letter = rng.chance(0.5) ? letterAt(at) : rng.pick([...neighbourKeys(letterAt(at))]);
    result = [...letters.slice(0, at + 1), letter, ...letters.slice(at + 1)];
  } else if (kind === 'delete') {
    result = letters.filter((_, i) => i !== at);
  } else if (kind === 'substitute') {
    result = letters.map((letter, i) => (i === at ? cased(i, rng.pick([...neighbourKeys(letterAt(i))])) : letter));
  } else {
    const pairs = positions.filter((i) => positions.includes(i + 1));
    if (pairs.length === 0) return typo(word, rng, 'substitute');
    const first = rng.pick(pairs);
    result = [...letters];
    [result[first], result[first + 1]] = [cased(first, letterAt(first + 1)), cased(first + 1, letterAt(first))];
  }
  const text = result.join('');
  return text.toLowerCase() === word.toLowerCase() ? typo(word, rng, kind === 'transpose' ? 'substitute' : kind) : text;
}

const NICKNAME_GROUPS: readonly (readonly string[])[] = nicknameTable.groups;
const capitalized = (name: string) => name.charAt(0).toUpperCase() + name.slice(1);
const folded = (name: string) => foldedWords(name).join('');

/** Other names of the groups `given` belongs to (Margaret → Peggy, Maggie…). */
function nicknamesOf(given: string): string[] {
  const name = folded(given);
  return [...new Set(NICKNAME_GROUPS.filter((group) => group.includes(name)).flat())].filter((other) => other !== name);
}

/** Names that would not be given to a sibling of `name`: the name itself, its nicknames, names that sound the same. */
function tooAlike(a: string, b: string): boolean {
  const x = folded(a);
  const y = folded(b);
  if (x === y || nicknamesOf(a).includes(y)) return true;
  const codes = phoneticCodes(y);
  return phoneticCodes(x).some((code) => codes.includes(code));
}

/** A first name for a new member of a family: drawn like the population's, never alike one of `siblings`. */
function siblingGivenNames(ctx: Context, gender: Gender, birthYear: number, siblings: readonly string[], initial?: string): string[] {
  const avoid = new Set(siblings);
  let given = drawGivenNames(ctx.rng, ctx.tables, gender, birthYear, avoid, initial);
  for (let attempt = 0; attempt < 60 && siblings.some((s) => tooAlike(s, given[0])); attempt++) given = drawGivenNames(ctx.rng, ctx.tables, gender, birthYear, avoid);
  return given;
}

type Corruption = (p: Presented, ctx: Context, member: GroundTruthMember) => string | undefined;

/** Old enough to have married since our records were made. */
function marries(member: GroundTruthMember, asOf: number): boolean {
  return dayOf(member.birthDate) <= addYears(asOf, -20);
}

/** A keystroke error in the family name, the first given name or both (sometimes two in one name). */
const typoCorruption: Corruption = (p, { rng }) => {
  const where = rng.next();
  if (where < 0.45) {
    p.family = typo(p.family, rng);
    return 'typo:family';
  }
  if (where < 0.85) {
    p.given[0] = typo(p.given[0], rng);
    return 'typo:given';
  }
  if (where < 0.93) {
    p.family = typo(p.family, rng);
    p.given[0] = typo(p.given[0], rng);
    return 'typo:family+given';
  }
  const original = p.family;
  do p.family = typo(typo(original, rng), rng);
  while (p.family.toLowerCase() === original.toLowerCase());
  return 'typo:family×2';
};

/** One keystroke in the birth date: a digit replaced, two neighbouring digits exchanged, or the year off by one. */
const birthDateTypo: Corruption = (p, ctx) => {
  const { rng } = ctx;
  if (!p.birthDate) return undefined;
  const original = p.birthDate;
  for (let attempt = 0; attempt < 20; attempt++) {
    const digits = original.replaceAll('-', '').split('');
    const kind = rng.next();
    if (kind < 0.3) {
      digits.splice(0, 4, ...String(Number(original.slice(0, 4)) + (rng.chance(0.5) ? 1 : -1)).split(''));
    } else if (kind < 0.7) {
      const at = rng.int(2, 7);
      digits[at] = String((Number(digits[at]) + rng.int(1, 9)) % 10);
    } else {
      const at = rng.int(2, 6);
      [digits[at], digits[at + 1]] = [digits[at + 1], digits[at]];
    }
    const text = `${digits.slice(0, 4).join('')}-${digits.slice(4, 6).join('')}-${digits.slice(6, 8).join('')}`;
    const day = dayOf(text);
    if (text !== original && !Number.isNaN(day) && isoDate(day) === text && day < ctx.asOf) {
      p.birthDate = text;
      return 'typo:birthDate';
    }
  }
  return undefined;
};

const nicknameCorruption: Corruption = (p, { rng }) => {
  const others = nicknamesOf(p.given[0]);
  if (others.length === 0) return undefined;
  p.given[0] = capitalized(rng.pick(others));
  return 'nickname';
};

/** Married after our records were made: a surname we have never seen, or both joined with a hyphen. Mostly women. */
const marriedName: Corruption = (p, { rng, tables, asOf }, member) => {
  if (!marries(member, asOf) || (member.gender === 'male' && !rng.chance(0.05))) return undefined;
  const spouse = drawOtherSurname(rng, tables, p.family);
  p.family = rng.chance(0.15) ? `${p.family}-${spouse}` : spouse;
  return 'married-name';
};

/** Given and family name exchanged: a form that puts the surname first, filled in the other way (FEBRL's field swap). */
const swappedNames: Corruption = (p) => {
  [p.family, p.given] = [p.given[0], [p.family]];
  return 'swapped-names';
};

/** One part of a compound or hyphenated surname (Garcia Lopez → Garcia, Smith-Jones → Jones). */
const shortenedSurname: Corruption = (p, { rng }) => {
  const parts = p.family.split(/[\s-]+/).filter((part) => part.length > 1);
  if (parts.length < 2) return undefined;
  p.family = rng.pick(parts);
  return 'shortened-surname';
};

/** The requester still knows the member by an earlier name (maiden, or before a divorce). */
const earlierName: Corruption = (p, _ctx, member) => {
  const earlier = member.names.slice(1).find((name) => name.family !== p.family);
  if (!earlier) return undefined;
  p.family = earlier.family;
  delete p.suffix;
  return 'maiden-name';
};

/** Moved since: an address we do not have, and often a new number. */
const moved: Corruption = (p, ctx) => {
  const { rng, tables } = ctx;
  const city = p.address && rng.chance(0.5) ? (cityOf(tables, p.address) ?? tables.cities.draw(rng)) : tables.cities.draw(rng);
  p.address = drawAddress(rng, tables, city);
  const phone = rng.next();
  if (phone < 0.35) p.phones = [drawPhone(rng, city)];
  else if (phone < 0.5) p.phones = [];
  return 'moved';
};

const dobSwap: Corruption = (p) => {
  const date = p.birthDate;
  if (!date) return undefined;
  const [year, month, day] = date.split('-');
  if (Number(day) > 12 || day === month) return undefined;
  p.birthDate = `${year}-${day}-${month}`;
  return 'dob-swap';
};

/** The card's id typed another way, or with its dependent number added or dropped. */
const idFormat: Corruption = (p, { rng }, member) => {
  const card = p.card;
  if (!card?.memberId) return undefined;
  const way = rng.next();
  if (way < 0.2) {
    // Only the subscriber's number, as many cards print it; the person's number apart or not at all.
    card.memberId = member.subscriberId;
    if (rng.chance(0.5)) card.dependent = member.personCode;
    else delete card.dependent;
    return 'id-format:dependent-dropped';
  }
  if (way < 0.3 && member.role === 'subscriber') {
    // The subscriber's number with the subscriber's own suffix added.
    card.memberId = `${member.subscriberId}-01`;
    card.style = 'printed';
    return 'id-format:dependent-added';
  }
  card.style = rng.pick(['space', 'dash', 'asterisk', 'grouped', 'lower'] as const);
  return `id-format:${card.style}`;
};

/** An old card from before the payer renumbered its members. */
const legacyCard: Corruption = (p, { rng }, member) => {
  if (!member.legacyMemberId) return undefined;
  const legacy = member.legacyMemberId.value;
  p.card = {
    memberId: legacy,
    ...(rng.chance(0.5) ? { subscriberId: legacy.slice(0, -2) } : {}),
    style: legacy.startsWith('0') ? rng.pick(['printed', 'leading-zeros-dropped'] as const) : rng.pick(['printed', 'leading-zeros-added'] as const),
  };
  return 'legacy-id';
};

const missingPhone: Corruption = (p) => {
  if (p.phones.length === 0) return undefined;
  p.phones = [];
  return 'missing:phone';
};
const missingAddress: Corruption = (p) => {
  if (!p.address) return undefined;
  delete p.address;
  return 'missing:address';
};
const missingCard: Corruption = (p) => {
  if (!p.card) return undefined;
  delete p.card;
  return 'missing:card';
};

/** Missing fields: one or two of phone, address and card ids (those the request has). */
const missingFields: Corruption = (p, ctx, member) => {
  const wanted = ctx.rng.chance(0.35) ? 2 : 1;
  const done: string[] = [];
  for (const leaveOut of ctx.rng.shuffle([missingPhone, missingAddress, missingCard])) {
    if (done.length === wanted) break;
    const applied = leaveOut(p, ctx, member);
    if (applied) done.push(applied);
  }
  return done.length > 0 ? done.join('+') : undefined;
};

/** What `combined` draws two or three of (one of each kind). */
const COMBINABLE: Corruption[][] = [
  [typoCorruption, typoCorruption, swappedNames, shortenedSurname],
  [nicknameCorruption],
  [marriedName, earlierName],
  [moved],
  [dobSwap, birthDateTypo],
  [idFormat, legacyCard],
  [missingPhone, missingAddress, missingCard],
];

function applyCombined(p: Presented, ctx: Context, member: GroundTruthMember): string[] {
  const wanted = ctx.rng.chance(0.6) ? 2 : 3;
  const done: string[] = [];
  for (const kinds of ctx.rng.shuffle(COMBINABLE)) {
    if (done.length === wanted) break;
    const applied = ctx.rng.pick(kinds)(p, ctx, member);
    if (applied) done.push(applied);
  }
  return done;
}

/** A light change on top of a hard negative, so telling people apart does not rest on perfect data. */
const LIGHT: Corruption[] = [typoCorruption, nicknameCorruption, moved, missingPhone, missingCard, idFormat, birthDateTypo];
/** The same, leaving the card alone where the card is what makes the request hard. */
const LIGHT_DEMOGRAPHIC: Corruption[] = [typoCorruption, nicknameCorruption, moved, missingPhone, birthDateTypo];

function maybeLight(p: Presented, ctx: Context, member: GroundTruthMember, probability: number, kinds = LIGHT): string[] {
  if (!ctx.rng.chance(probability)) return [];
  const applied = ctx.rng.pick(kinds)(p, ctx, member);
  return applied ? [applied] : [];
}

// --- made-up people ------------------------------------------------------------------------

function cityOf(tables: SeedTables, address: StreetAddress): City | undefined {
  return tables.cities.items.find((c) => c.city === address.city && c.state === address.state);
}

/** A card of another payer: the requester was told the member was covered here, or sent the wrong card. */
function otherPayerCard(rng: Random): Card {
  const digits = (n: number) => Array.from({ length: n }, () => rng.int(0, 9)).join('');
  const memberId = rng.pick([() => `XJH${digits(9)}`, () => `H${digits(8)}`, () => `ZGP${digits(9)}01`, () => `MCD${digits(10)}`, () => `9${digits(10)}`])();
  return { memberId, style: 'printed' };
}

/** Someone who is not a member: drawn from the same tables as the population. */
function nonMember(ctx: Context): Presented {
  const { rng, tables, asOf } = ctx;
  const gender: Gender = rng.chance(0.5) ? 'female' : 'male';
  const birth = rng.int(addYears(asOf, -90), asOf - 30);
  const city = tables.cities.draw(rng);
  return {
    family: drawSurname(rng, tables),
    given: drawGivenNames(rng, tables, gender, yearOf(birth)),
    gender,
    birthDate: isoDate(birth),
    address: drawAddress(rng, tables, city),
    phones: rng.chance(0.75) ? [drawPhone(rng, city)] : [],
    ...(rng.chance(0.7) ? { card: otherPayerCard(rng) } : {}),
  };
}

/** A stranger with the member's common name, of about the same age, sometimes in the same city. */
function commonNameStranger(ctx: Context, member: GroundTruthMember): Presented {
  const { rng, tables } = ctx;
  const born = dayOf(member.birthDate);
  let birth = born;
  while (birth === born) birth = rng.chance(0.4) ? rng.int(dayOf(`${yearOf(born)}-01-01`), dayOf(`${yearOf(born)}-12-31`)) : born + rng.int(-15 * 365, 15 * 365);
  birth = Math.min(birth, ctx.asOf - 30);
  const name = member.names[0];
  const home = cityOf(tables, member.addresses[0]);
  const city = home && rng.chance(0.4) ? home : tables.cities.draw(rng);
  const middle = drawGivenNames(rng, tables, member.gender, yearOf(birth)).slice(1);
  return {
    family: name.family,
    given: [name.given[0], ...middle],
    gender: member.gender,
    birthDate: isoDate(birth === born ? born + 1 : birth),
    address: drawAddress(rng, tables, city),
    phones: rng.chance(0.7) ? [drawPhone(rng, city)] : [],
    ...(rng.chance(0.6) ? { card: otherPayerCard(rng) } : {}),
  };
}

/** The family card as a relative who is not on it would give it: the subscriber's number, and the subscriber's own id at times. */
function familyCard(rng: Random, subscriber: GroundTruthMember): Card {
  return rng.chance(0.5) ? { memberId: subscriber.memberId, subscriberId: subscriber.subscriberId, style: 'printed' } : { memberId: subscriber.subscriberId, style: 'printed' };
}

/** A twin of `member` who is not a member here: the twin's record with another first name (and at times the other sex). */
function absentTwin(ctx: Context, member: GroundTruthMember): Presented {
  const { rng } = ctx;
  const p = presentMember(member, ctx);
  const gender: Gender = rng.chance(RATES.sameSexTwins) ? member.gender : member.gender === 'male' ? 'female' : 'male';
  const initial = rng.chance(RATES.twinsSameInitial) ? member.names[0].given[0][0] : undefined;
  p.given = siblingGivenNames(ctx, gender, yearOf(dayOf(member.birthDate)), ctx.household.map((m) => m.names[0].given[0]), initial);
  p.gender = gender;
  delete p.suffix;
  const home = member.phones.find((phone) => phone.use === 'home');
  p.phones = [...(home && rng.chance(0.5) ? [home.value] : []), ...(rng.chance(0.4) ? [drawPhone(rng, cityOf(ctx.tables, member.addresses[0]) ?? ctx.tables.cities.draw(rng))] : [])];
  if (rng.chance(0.75)) p.card = familyCard(rng, ctx.household[0]);
  else delete p.card;
  p.relationship = 'child';
  return p;
}

/**
 * A spouse or child of the subscriber who was never covered here, presented with the family card:
 * a spouse when the household has none (half the time), else a child born while the youngest
 * adult was 18 to 45, on a day none of the members was born.
 */
function absentRelative(ctx: Context): Presented {
  const { rng, tables, asOf, household } = ctx;
  const subscriber = household[0];
  const address = subscriber.addresses[0];
  const home = subscriber.phones.find((phone) => phone.use === 'home');
  const city = cityOf(tables, address) ?? tables.cities.draw(rng);
  const youngestAdult = Math.max(...household.filter((m) => m.role !== 'child').map((m) => dayOf(m.birthDate)));
  const firstChildDay = addYears(youngestAdult, 18);
  const lastChildDay = Math.min(addYears(youngestAdult, 45), asOf - 30);
  const spouse = (!household.some((m) => m.role === 'spouse') && rng.chance(0.5)) || firstChildDay > lastChildDay;
  let gender: Gender;
  let birth: number;
  let family: string;
  if (spouse) {
    gender = rng.chance(RATES.sameSexCouple) ? subscriber.gender : subscriber.gender === 'male' ? 'female' : 'male';
    birth = Math.min(dayOf(subscriber.birthDate) + rng.int(-6 * 365, 6 * 365), addYears(asOf, -18));
    family = rng.chance(0.6) ? subscriber.names[0].family : drawOtherSurname(rng, tables, subscriber.names[0].family);
  } else {
    gender = rng.chance(0.51) ? 'male' : 'female';
    const taken = new Set(household.map((m) => m.birthDate));
    birth = rng.int(firstChildDay, lastChildDay);
    for (let attempt = 0; attempt < 20 && taken.has(isoDate(birth)); attempt++) birth = rng.int(firstChildDay, lastChildDay);
    family = (household.find((m) => m.role === 'child') ?? subscriber).names[0].family;
  }
  return {
    family,
    given: siblingGivenNames(ctx, gender, yearOf(birth), household.map((m) => m.names[0].given[0])),
    gender,
    birthDate: isoDate(birth),
    address,
    phones: [...(home && rng.chance(0.6) ? [home.value] : []), ...(rng.chance(0.4) ? [drawPhone(rng, city)] : [])],
    card: familyCard(rng, subscriber),
    relationship: spouse ? 'spouse' : 'child',
  };
}

// --- FHIR resources as the requester writes them --------------------------------------------

const EXPANDED_SUFFIXES: Record<string, string> = {
  St: 'Street', Ave: 'Avenue', Rd: 'Road', Dr: 'Drive', Ln: 'Lane', Ct: 'Court', Blvd: 'Boulevard', Pl: 'Place', Cir: 'Circle', Ter: 'Terrace', Pkwy: 'Parkway', Trl: 'Trail', Hwy: 'Highway',
};

/** The member id as written on the request (see IdStyle). */
function renderMemberId(value: string, style: IdStyle): string {
  const split = /^(.*?)(\d{2})$/.exec(value);
  const [base, suffix] = split && split[1].length >= 5 ? [split[1], split[2]] : [value, ''];
  switch (style) {
    case 'printed':
      return value;
    case 'space':
      return suffix ? `${base} ${suffix}` : value;
    case 'dash':
      return suffix ? `${base}-${suffix}` : value;
    case 'asterisk':
      return suffix ? `${base}*${suffix}` : value;
    case 'grouped':
      return value.replace(/(\d{3})(?=\d)/g, '$1 ').replace(/^([A-Z]+)(?=\d)/, '$1 ');
    case 'lower':
      return value.toLowerCase();
    case 'leading-zeros-dropped':
      return value.replace(/^0+/, '');
    case 'leading-zeros-added':
      return `00${value}`;
  }
}

function formatPhone(value: string, rng: Random): string {
  const digits = value.replace(/\D/g, '');
  const [area, exchange, line] = [digits.slice(0, 3), digits.slice(3, 6), digits.slice(6)];
  return rng.pick([`${area}-${exchange}-${line}`, `(${area}) ${exchange}-${line}`, `${area}${exchange}${line}`, `+1 ${area} ${exchange} ${line}`, `${area}.${exchange}.${line}`]);
}

function renderAddress(address: StreetAddress, rng: Random): NonNullable<Patient['address']>[number] {
  const [first, ...rest] = address.line;
  const street = rng.chance(0.25) ? first.replace(/\b([A-Z][a-z]+)$/, (word) => EXPANDED_SUFFIXES[word] ?? word) : first;
  const unit = rest.join(' ');
  const lines = !unit || rng.chance(0.15) ? [street] : rng.chance(0.3) ? [`${street} ${unit}`] : [street, rng.chance(0.2) ? unit.replace(/^\S+\s+/, '#') : unit];
  const postalCode = address.postalCode.length > 5 && rng.chance(0.5) ? address.postalCode.slice(0, 5) : address.postalCode;
  return { use: 'home', line: lines, city: rng.chance(0.1) ? address.city.toUpperCase() : address.city, state: address.state, postalCode };
}

function toResources(p: Presented, rng: Random, index: number): { memberPatient: Patient; coverageToMatch: Coverage } {
  const upper = rng.chance(0.1);
  const cased = (text: string) => (upper ? text.toUpperCase() : text);
  // Middle names: as on file, an initial, or left off.
  const middleWay = rng.next();
  const given = p.given.length > 1 && middleWay >= 0.5 ? (middleWay < 0.75 ? [p.given[0], p.given[1][0]] : [p.given[0]]) : p.given;
  const suffixWay = p.suffix ? rng.next() : 1;
  const name = {
    family: cased(suffixWay >= 0.5 && suffixWay < 0.6 ? `${p.family} ${p.suffix}` : p.family),
    given: given.map(cased),
    ...(suffixWay < 0.5 ? { suffix: [p.suffix as string] } : {}),
  };
  const identifier: Identifier[] = rng.chance(0.5) ? [{ type: MEMBER_TYPE, system: NEW_PAYER_MEMBER_SYSTEM, value: `NP${String(100_000_000 + index * 7919).slice(-9)}` }] : [];
  const memberPatient: Patient = {
    resourceType: 'Patient',
    id: MEMBER_PATIENT_ID,
    ...(identifier.length ? { identifier } : {}),
    name: [name],
    ...(p.phones.length ? { telecom: p.phones.map((value) => ({ system: 'phone' as const, value: formatPhone(value, rng) })) } : {}),
    ...(p.gender && rng.chance(0.97) ? { gender: p.gender } : {}),
    ...(p.birthDate ? { birthDate: p.birthDate } : {}),
    ...(p.address ? { address: [renderAddress(p.address, rng)] } : {}),
  };
  const card = p.card;
  const coverageToMatch: Coverage = {
    resourceType: 'Coverage',
    id: '9876B1',
    status: 'active',
    ...(card?.memberId ? { identifier: [{ type: MEMBER_TYPE, value: renderMemberId(card.memberId, card.style) }] } : {}),
    ...(card?.subscriberId ? { subscriberId: card.subscriberId } : {}),
    ...(card?.dependent ? { dependent: card.dependent } : {}),
    beneficiary: { reference: `Patient/${MEMBER_PATIENT_ID}` },
    ...(p.relationship && rng.chance(0.5) ? { relationship: { coding: [{ system: RELATIONSHIP_SYSTEM, code: p.relationship }] } } : {}),
    payor: [{ display: 'Previous health plan' }],
  };
  return { memberPatient, coverageToMatch };
}

// --- the strata ----------------------------------------------------------------------------

interface Pools {
  all: GroundTruthMember[];
  nickname: GroundTruthMember[];
  marrying: GroundTruthMember[];
  earlierName: GroundTruthMember[];
  swappable: GroundTruthMember[];
  legacy: GroundTruthMember[];
  twin: GroundTruthMember[];
  namesake: GroundTruthMember[];
  family: GroundTruthMember[];
  commonName: GroundTruthMember[];
}

function poolsOf(members: readonly GroundTruthMember[], asOf: number): Pools {
  const familyCounts = new Map<string, number>();
  for (const m of members) familyCounts.set(m.names[0].family, (familyCounts.get(m.names[0].family) ?? 0) + 1);
  const common = new Set([...familyCounts].sort((a, b) => b[1] - a[1]).slice(0, 100).map(([family]) => family));
  const householdSize = new Map<number, number>();
  for (const m of members) householdSize.set(m.householdIndex, (householdSize.get(m.householdIndex) ?? 0) + 1);
  return {
    all: [...members],
    nickname: members.filter((m) => nicknamesOf(m.names[0].given[0]).length > 0),
    // Women who never changed their name: the usual name change a payer has not heard of.
    marrying: members.filter((m) => m.gender === 'female' && m.names.length === 1 && marries(m, asOf)),
    earlierName: members.filter((m) => m.names.slice(1).some((name) => name.family !== m.names[0].family)),
    swappable: members.filter((m) => Number(m.birthDate.slice(8)) <= 12 && m.birthDate.slice(8) !== m.birthDate.slice(5, 7)),
    legacy: members.filter((m) => m.legacyMemberId),
    twin: members.filter((m) => m.relations.some((r) => r.kind === 'twin')),
    namesake: members.filter((m) => m.relations.some((r) => r.namesake)),
    family: members.filter((m) => (householdSize.get(m.householdIndex) ?? 0) > 1),
    commonName: members.filter((m) => common.has(m.names[0].family)),
  };
}

const POOL_OF: Record<MatchStratum, keyof Pools | undefined> = {
  exact: 'all',
  typo: 'all',
  nickname: 'nickname',
  'married-name': 'marrying',
  'maiden-name': 'earlierName',
  moved: 'all',
  'dob-swap': 'swappable',
  'id-format': 'all',
  'legacy-id': 'legacy',
  'missing-fields': 'all',
  combined: 'all',
  twin: 'twin',
  'twin-not-member': 'twin',
  namesake: 'namesake',
  'household-card': 'family',
  'household-not-member': 'all',
  'common-name': 'commonName',
  'non-member': undefined,
};

/** Corruption of a member's own request, by stratum. */
const OWN_REQUEST: Partial<Record<MatchStratum, Corruption>> = {
  typo: (p, ctx, m) => (ctx.rng.chance(0.1) ? birthDateTypo(p, ctx, m) : typoCorruption(p, ctx, m)),
  nickname: nicknameCorruption,
  'married-name': marriedName,
  'maiden-name': earlierName,
  moved,
  'dob-swap': dobSwap,
  'id-format': idFormat,
  'legacy-id': legacyCard,
  'missing-fields': missingFields,
};

interface Built {
  presented: Presented;
  corruptions: string[];
  patientId?: string;
  decoy?: LabelledMatchQuery['decoy'];
}

function buildRequest(stratum: MatchStratum, member: GroundTruthMember | undefined, ctx: Context): Built {
  const { rng, byId, household } = ctx;
  if (!member) return { presented: nonMember(ctx), corruptions: [] };
  const relative = (kind: (r: GroundTruthMember['relations'][number]) => boolean) => {
    const related = member.relations.filter(kind);
    return byId.get(rng.pick(related).patientId) as GroundTruthMember;
  };
  switch (stratum) {
    case 'twin': {
      // A request about one twin; the other, on the same card, must not be taken for them.
      const twin = relative((r) => r.kind === 'twin');
      const p = presentMember(member, ctx);
      const card = rng.next();
      if (card < 0.5) p.card = { subscriberId: member.subscriberId, memberId: member.subscriberId, style: 'printed' };
      else if (card < 0.6) delete p.card;
      return { presented: p, corruptions: maybeLight(p, ctx, member, 0.4), patientId: member.patientId, decoy: { patientId: twin.patientId, kind: 'twin' } };
    }
    case 'twin-not-member':
      return { presented: absentTwin(ctx, member), corruptions: ['other-first-name'], decoy: { patientId: member.patientId, kind: 'twin' } };
    case 'namesake': {
      const namesake = relative((r) => r.namesake === true);
      const p = presentMember(member, ctx);
      if (rng.chance(0.5)) delete p.suffix;
      if (rng.chance(0.5)) p.card = { memberId: member.subscriberId, subscriberId: member.subscriberId, style: 'printed' };
      return { presented: p, corruptions: maybeLight(p, ctx, member, 0.3), patientId: member.patientId, decoy: { patientId: namesake.patientId, kind: 'namesake' } };
    }
    case 'household-card': {
      // The member's demographics with the card of another member of the household (usually the subscriber's).
      const others = household.filter((m) => m.patientId !== member.patientId);
      const subscriber = others.find((m) => m.role === 'subscriber');
      const holder = subscriber && rng.chance(0.7) ? subscriber : rng.pick(others);
      const p = presentMember(member, ctx);
      p.card = { memberId: holder.memberId, ...(rng.chance(0.6) ? { subscriberId: holder.subscriberId } : {}), style: 'printed' };
      return { presented: p, corruptions: maybeLight(p, ctx, member, 0.3, LIGHT_DEMOGRAPHIC), patientId: member.patientId, decoy: { patientId: holder.patientId, kind: 'household' } };
    }
    case 'household-not-member':
      return { presented: absentRelative(ctx), corruptions: ['not-enrolled-relative'], decoy: { patientId: household[0].patientId, kind: 'household' } };
    case 'common-name':
      return { presented: commonNameStranger(ctx, member), corruptions: ['same-name-stranger'], decoy: { patientId: member.patientId, kind: 'common-name' } };
    case 'combined': {
      const p = presentMember(member, ctx);
      return { presented: p, corruptions: applyCombined(p, ctx, member), patientId: member.patientId };
    }
    default: {
      const p = presentMember(member, ctx);
      const corruption = OWN_REQUEST[stratum];
      const applied = corruption?.(p, ctx, member);
      return { presented: p, corruptions: applied ? [applied] : [], patientId: member.patientId };
    }
  }
}

/**
 * `options.queries` labelled requests. Strata without eligible members in this population (no
 * twins in a small one) are left out and the others' shares scaled up.
 */
export function generateMatchQueries(members: readonly GroundTruthMember[], options: MatchQueryOptions): LabelledMatchQuery[] {
  if (members.length === 0) throw new RangeError('generateMatchQueries: the population has no members');
  const tables = seedTables();
  const asOf = dayOf(options.asOf);
  const pools = poolsOf(members, asOf);
  const shares = { ...DEFAULT_STRATUM_SHARES, ...options.shares };
  const available = MATCH_STRATA.filter((stratum) => {
    const pool = POOL_OF[stratum];
    return shares[stratum] > 0 && (pool === undefined || pools[pool].length > 0);
  });
  const strata = new WeightedTable(available, available.map((stratum) => shares[stratum]));
  const byId = new Map(members.map((m) => [m.patientId, m]));
  const households = new Map<number, GroundTruthMember[]>();
  for (const m of members) {
    const household = households.get(m.householdIndex);
    if (household) household.push(m);
    else households.set(m.householdIndex, [m]);
  }
  const queries: LabelledMatchQuery[] = [];
  for (let index = 0; index < options.queries; index++) {
    const rng = new Random(options.seed, 'match-query', index);
    const stratum = strata.draw(rng);
    const pool = POOL_OF[stratum];
    const member = pool === undefined ? undefined : rng.pick(pools[pool]);
    const household = member ? (households.get(member.householdIndex) ?? []) : [];
    const built = buildRequest(stratum, member, { rng, tables, asOf, byId, household });
    queries.push({
      index,
      stratum,
      corruptions: built.corruptions,
      ...toResources(built.presented, rng, index),
      ...(built.patientId ? { patientId: built.patientId } : {}),
      ...(built.decoy ? { decoy: built.decoy } : {}),
    });
  }
  return queries;
}
