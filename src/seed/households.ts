import { type StreetAddress, drawAddress, drawEmail, drawPhone } from './contact.ts';
import { YEAR_DAYS, addYears, ageOn, firstOfMonth, isoDate, lastOfMonth, yearOf } from './dates.ts';
import type { householdNumbers } from './identifiers.ts';
import { drawGivenNames, drawOtherSurname, drawSurname } from './names.ts';
import { Random, type WeightedTable } from './random.ts';
import { RATES } from './rates.ts';
import type { City, CoverageClass, Gender, SeedTables } from './tables.ts';

/*
 * The people of the synthetic population, before they become FHIR resources: households of a
 * subscriber and dependents, with the identity drift a payer's records accumulate (maiden and
 * married names, previous addresses, legacy member ids). Pure: a household is a function of
 * (seed, id prefix, index, as-of date).
 */

export type HouseholdKind = 'single' | 'couple' | 'family' | 'single-parent';
export const HOUSEHOLD_KINDS: readonly HouseholdKind[] = ['single', 'couple', 'family', 'single-parent'];
export type HouseholdShares = Record<HouseholdKind, number>;
/** Roughly the make-up of a commercial payer's enrolled households. */
export const DEFAULT_HOUSEHOLD_SHARES: HouseholdShares = { single: 0.36, couple: 0.22, family: 0.32, 'single-parent': 0.1 };

/** The member's relationship to the subscriber, as Coverage.relationship codes it. */
export type HouseholdRole = 'subscriber' | 'spouse' | 'child';

export interface Period {
  start?: string;
  end?: string;
}

export interface MemberName {
  use: 'official' | 'maiden' | 'old';
  family: string;
  given: string[];
  suffix?: string;
  period?: Period;
}

export interface MemberAddress extends StreetAddress {
  use: 'home' | 'old';
  period?: Period;
}

export interface MemberPhone {
  value: string;
  use: 'home' | 'mobile';
}

export interface SyntheticMember {
  /** 1-based position in the population: the number in the member's resource ids. */
  ordinal: number;
  patientId: string;
  role: HouseholdRole;
  /** Two digits after the subscriber id: 01 the subscriber, 02 the spouse, 03… the children. */
  personCode: string;
  memberId: string;
  /** The member id before the payer's id migration, valid until `end`. */
  legacyMemberId?: { value: string; end: string };
  gender: Gender;
  birthDate: string;
  /** The current name first, then earlier ones with their periods. */
  names: MemberName[];
  /** The current address first, then earlier ones with their periods. */
  addresses: MemberAddress[];
  phones: MemberPhone[];
  email?: string;
  /** v3-MaritalStatus, for adults. */
  maritalStatus?: 'M' | 'S' | 'D' | 'W';
  /** Children born together (twins) share a birth group. */
  birthGroup?: number;
  /** A junior: the patient id of the father whose full name he carries. */
  namesakeOf?: string;
  coverage: Period;
}

export interface SyntheticHousehold {
  /** 0-based position in the population. */
  index: number;
  kind: HouseholdKind;
  subscriberId: string;
  group: CoverageClass;
  plan: CoverageClass;
  /** Subscriber first, then the spouse, then children oldest first. */
  members: SyntheticMember[];
}

export interface HouseholdContext {
  seed: number;
  idPrefix: string;
  /** The day the population is as of: ages, coverage periods and history end here. */
  asOf: number;
  kinds: WeightedTable<HouseholdKind>;
  numbers: ReturnType<typeof householdNumbers>;
  tables: SeedTables;
}

export const patientIdOf = (idPrefix: string, ordinal: number): string => `${idPrefix}-patient-${ordinal}`;

/** [youngest age, oldest age, weight] */
type AgeBands = [number, number, number][];
const SINGLE_AGES: AgeBands = [[19, 25, 0.18], [26, 35, 0.25], [36, 50, 0.22], [51, 64, 0.2], [65, 74, 0.09], [75, 84, 0.045], [85, 95, 0.015]];
/** Ages of the younger partner of a couple without dependent children. */
const COUPLE_AGES: AgeBands = [[22, 30, 0.1], [31, 45, 0.22], [46, 64, 0.38], [65, 74, 0.18], [75, 84, 0.09], [85, 92, 0.03]];
/** Number of children: weights for 1, 2, 3, 4. */
const FAMILY_CHILDREN = [0.36, 0.4, 0.17, 0.07];
const SINGLE_PARENT_CHILDREN = [0.5, 0.35, 0.15];
/** Dependents are covered until 26 (ACA). */
const OLDEST_DEPENDENT_AGE = 25;

interface Draft {
  role: HouseholdRole;
  gender: Gender;
  birth: number;
  names: MemberName[];
  maritalStatus?: SyntheticMember['maritalStatus'];
  birthGroup?: number;
  junior?: boolean;
  /** An adult child living apart: own address since this day. */
  away?: { address: StreetAddress; city: City; since: number };
}

function drawCount(rng: Random, weights: number[]): number {
  let r = rng.next() * weights.reduce((a, b) => a + b, 0);
  for (let i = 0; i < weights.length; i++) {
    r -= weights[i];
    if (r < 0) return i + 1;
  }
  return weights.length;
}

function birthForAge(rng: Random, asOf: number, bands: AgeBands): number {
  const band = bands[drawCount(rng, bands.map(([, , w]) => w)) - 1];
  return addYears(asOf, -rng.int(band[0], band[1])) - rng.int(0, 364);
}

const years = (n: number) => Math.round(n * YEAR_DAYS);
const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));
const otherGender = (g: Gender): Gender => (g === 'male' ? 'female' : 'male');

/** Children's birth days, oldest first; twins share a day and a birth group. */
function drawBirths(rng: Random, asOf: number, wanted: number): { day: number; group: number }[] {
  const births: { day: number; group: number }[] = [];
  let day = asOf - rng.int(30, years(OLDEST_DEPENDENT_AGE + 0.9));
  for (let group = 0; births.length < wanted && day < asOf - 14; group++) {
    births.push({ day, group });
    if (rng.chance(RATES.twinBirth)) births.push({ day, group });
    day += years(clamp(rng.normal(2.8, 1.3), 0.9, 8));
  }
  return births;
}

/** The day two partners married: after both were 20 where possible, before their first child. */
function marriageDay(rng: Random, asOf: number, births: number[], firstChild: number | undefined): number {
  const upper = firstChild !== undefined ? firstChild - rng.int(0, years(3)) : asOf - 60;
  const lower = Math.max(...births.map((b) => addYears(b, 20)));
  return rng.int(Math.min(lower, upper - 365), upper);
}

const current = (family: string, given: string[], since?: number): MemberName => ({ use: 'official', family, given, ...(since !== undefined ? { period: { start: isoDate(since) } } : {}) });

/** A partner's names after marriage to someone called `partnerFamily`. */
function marriedNames(rng: Random, own: string, given: string[], partnerFamily: string, married: number, gender: Gender, sameSex: boolean): MemberName[] {
  const r = rng.next();
  if (own === partnerFamily) return [current(own, given)];
  const history: MemberName = { use: gender === 'female' && !sameSex ? 'maiden' : 'old', family: own, given, period: { end: isoDate(married) } };
  if (sameSex) return r < RATES.sameSexTookName ? [current(partnerFamily, given, married), history] : [current(own, given)];
  if (r < RATES.tookSpouseName) return [current(partnerFamily, given, married), history];
  if (r < RATES.tookSpouseName + RATES.hyphenatedName) return [current(`${own}-${partnerFamily}`, given, married), history];
  return [current(own, given)];
}

/** The adults of a household (subscriber first), the surname their children carry, and the father a junior is named after. */
interface Adults {
  adults: Draft[];
  childrenFamily: string;
  father?: Draft;
}

/** A subscriber living alone or as a single parent, with the name history of a divorce where there was one. */
function drawSingleAdult(rng: Random, ctx: HouseholdContext, kind: HouseholdKind, birthOf: () => number, firstChild: number | undefined): Adults {
  const { asOf, tables } = ctx;
  const gender: Gender = kind === 'single-parent' ? (rng.chance(0.8) ? 'female' : 'male') : rng.chance(0.5) ? 'female' : 'male';
  const birth = birthOf();
  const own = drawSurname(rng, tables);
  const given = drawGivenNames(rng, tables, gender, yearOf(birth));
  const adult: Draft = { role: 'subscriber', gender, birth, names: [current(own, given)], maritalStatus: 'S' };
  let childrenFamily = own;
  const age = ageOn(birth, asOf);
  const divorce = (married: number, divorced: number, family: string) => {
    adult.names.push({ use: 'old', family, given, period: { start: isoDate(married), end: isoDate(divorced) } });
    adult.names[0].period = { start: isoDate(divorced) };
    adult.maritalStatus = 'D';
  };
  if (kind === 'single-parent' && gender === 'female' && rng.chance(RATES.childrenFatherSurname)) {
    childrenFamily = drawOtherSurname(rng, tables, own);
    if (rng.chance(RATES.singleMotherOldMarriedName)) {
      const married = marriageDay(rng, asOf, [birth], firstChild);
      divorce(married, rng.int(Math.min((firstChild as number) + 30, asOf - 30), asOf - 30), childrenFamily);
    }
  } else if (kind === 'single' && gender === 'female' && age >= 30 && rng.chance(RATES.divorcedRevertedName)) {
    const married = rng.int(addYears(birth, 20), addYears(birth, age - 2));
    const divorced = rng.int(married + 365, asOf - 30);
    divorce(married, divorced, drawOtherSurname(rng, tables, own));
  } else if (age >= 70 && rng.chance(0.4)) {
    adult.maritalStatus = 'W';
  } else if (kind === 'single-parent' && rng.chance(0.5)) {
    adult.maritalStatus = 'D';
  }
  return { adults: [adult], childrenFamily, ...(kind === 'single-parent' && gender === 'male' ? { father: adult } : {}) };
}

/** Two married partners, either of whom holds the policy; the spouse's names follow the marriage. */
function drawCouple(rng: Random, ctx: HouseholdContext, youngerBirthOf: () => number, olderBirthOf: (younger: number) => number, firstChild: number | undefined): Adults {
  const { asOf, tables } = ctx;
  const sameSex = rng.chance(RATES.sameSexCouple);
  const sameSexGender: Gender = rng.chance(0.5) ? 'male' : 'female';
  // In an opposite-sex couple the first partner is the husband: his surname is the family's.
  const [g1, g2]: Gender[] = sameSex ? [sameSexGender, sameSexGender] : ['male', 'female'];
  const b2 = youngerBirthOf();
  const b1 = olderBirthOf(b2);
  const family1 = drawSurname(rng, tables);
  const family2 = drawSurname(rng, tables);
  const given1 = drawGivenNames(rng, tables, g1, yearOf(b1));
  const given2 = drawGivenNames(rng, tables, g2, yearOf(b2));
  const married = marriageDay(rng, asOf, [b1, b2], firstChild);
  const first: Draft = { role: 'subscriber', gender: g1, birth: b1, names: [current(family1, given1)], maritalStatus: 'M' };
  const second: Draft = { role: 'spouse', gender: g2, birth: b2, names: marriedNames(rng, family2, given2, family1, married, g2, sameSex), maritalStatus: 'M' };
  const father = sameSex ? {} : { father: first };
  if (rng.chance(0.5)) {
    first.role = 'spouse';
    second.role = 'subscriber';
    return { adults: [second, first], childrenFamily: family1, ...father };
  }
  return { adults: [first, second], childrenFamily: family1, ...father };
}

/** The children, oldest first: twins of the same or mixed sex, a junior named after his father, adults living elsewhere. */
function drawChildren(rng: Random, ctx: HouseholdContext, births: { day: number; group: number }[], { adults, childrenFamily, father }: Adults): Draft[] {
  const { asOf, tables } = ctx;
  const children: Draft[] = [];
  let juniorDecided = false;
  for (let i = 0; i < births.length; i++) {
    const { day, group } = births[i];
    const twinOfPrevious = i > 0 && births[i - 1].group === group;
    const previous = children[i - 1];
    const gender: Gender = twinOfPrevious ? (rng.chance(RATES.sameSexTwins) ? previous.gender : otherGender(previous.gender)) : rng.chance(0.51) ? 'male' : 'female';
    const taken = new Set([...adults, ...children].map((d) => d.names[0].given[0]));
    const child: Draft = { role: 'child', gender, birth: day, names: [], birthGroup: group };
    if (father && gender === 'male' && !juniorDecided) {
      juniorDecided = true;
      if (rng.chance(RATES.junior)) {
        child.junior = true;
        child.names.push({ ...current(childrenFamily, [...father.names[0].given]), suffix: 'Jr' });
        if (rng.chance(RATES.seniorSuffix)) father.names[0].suffix = 'Sr';
      }
    }
    if (!child.junior) {
      const initial = twinOfPrevious && rng.chance(RATES.twinsSameInitial) ? previous.names[0].given[0][0] : undefined;
      child.names.push(current(childrenFamily, drawGivenNames(rng, tables, gender, yearOf(day), taken, initial)));
    }
    if (ageOn(day, asOf) >= 18 && rng.chance(RATES.adultChildAway)) {
      const city = tables.cities.draw(rng);
      child.away = { address: drawAddress(rng, tables, city), city, since: rng.int(Math.max(addYears(day, 18), asOf - years(4)), asOf - 30) };
    }
    children.push(child);
  }
  return children;
}

interface Home {
  city: City;
  address: StreetAddress;
  /** A move: the day it happened and the address before it. */
  moved?: { day: number; city: City; address: StreetAddress };
}

function drawHome(rng: Random, tables: SeedTables, asOf: number): Home {
  const city = tables.cities.draw(rng);
  const address = drawAddress(rng, tables, city);
  if (!rng.chance(RATES.moved)) return { city, address };
  const day = asOf - rng.int(years(0.3), years(8));
  const previousCity = rng.chance(RATES.movedWithinCity) ? city : tables.cities.draw(rng);
  return { city, address, moved: { day, city: previousCity, address: drawAddress(rng, tables, previousCity) } };
}

interface CoverageTerms {
  start: number;
  end?: number;
  /** The day the payer moved to new member ids: members enrolled before it keep a legacy id. */
  migration?: number;
  group: CoverageClass;
  plan: CoverageClass;
}

/** Enrolment on the first of a month, up to twelve years back, once the subscriber was 18; former members left at a month's end. */
function drawCoverageTerms(rng: Random, ctx: HouseholdContext, subscriber: Draft, births: { day: number }[]): CoverageTerms {
  const { asOf, tables } = ctx;
  const earliest = Math.max(addYears(subscriber.birth, 18), asOf - years(12));
  const start = firstOfMonth(earliest < asOf - 30 ? rng.int(earliest, asOf - 30) : asOf - 30);
  const youngest = births.length ? births[births.length - 1].day : -Infinity;
  const endFrom = Math.max(start + 150, youngest + 30);
  const end = rng.chance(RATES.formerMember) && endFrom < asOf - 30 ? Math.min(lastOfMonth(rng.int(endFrom, asOf - 30)), asOf - 1) : undefined;
  const migrationTo = Math.min(asOf - 90, end ?? Infinity);
  const migration = rng.chance(RATES.legacyMemberId) && start + 365 < migrationTo ? rng.int(start + 365, migrationTo) : undefined;
  const medicare = ageOn(subscriber.birth, asOf) >= 65 && births.length === 0 && rng.chance(RATES.medicareAdvantage);
  const group = medicare ? tables.medicareGroup : rng.chance(RATES.individualMarket) ? tables.individualGroup : tables.groups.draw(rng);
  const plan = medicare ? tables.medicarePlans.draw(rng) : tables.commercialPlans.draw(rng);
  return { start, ...(end !== undefined ? { end } : {}), ...(migration !== undefined ? { migration } : {}), group, plan };
}

/** Where a member lives and lived: the household's home (and the one before a move), or an adult child's own. */
function memberAddresses(draft: Draft, home: Home): MemberAddress[] {
  const addresses: MemberAddress[] = [];
  if (draft.away) {
    addresses.push({ ...draft.away.address, use: 'home', period: { start: isoDate(draft.away.since) } });
    addresses.push({ ...home.address, use: 'old', period: { end: isoDate(draft.away.since) } });
  } else {
    addresses.push({ ...home.address, use: 'home', ...(home.moved ? { period: { start: isoDate(home.moved.day) } } : {}) });
  }
  if (home.moved && draft.birth < home.moved.day) addresses.push({ ...home.moved.address, use: 'old', period: { end: isoDate(home.moved.day) } });
  return addresses;
}

export function generateHousehold(ctx: HouseholdContext, index: number, firstOrdinal: number, room: number): SyntheticHousehold {
  const rng = new Random(ctx.seed, ctx.idPrefix, 'household', index);
  const { asOf, tables } = ctx;
  const kind = ctx.kinds.draw(rng);

  const births = kind === 'family' || kind === 'single-parent' ? drawBirths(rng, asOf, drawCount(rng, kind === 'family' ? FAMILY_CHILDREN : SINGLE_PARENT_CHILDREN)) : [];
  const firstChild = births[0]?.day;
  // A parent's age at the first birth; the partner is a couple of years older on average.
  const parentBirth = () => (firstChild as number) - years(clamp(rng.normal(28, 5), 18, 44));
  const partnerBirth = (other: number) => Math.min(other - years(clamp(rng.normal(2, 3), -8, 15)), (firstChild ?? asOf) - years(18));

  const parents =
    kind === 'single' || kind === 'single-parent'
      ? drawSingleAdult(rng, ctx, kind, kind === 'single' ? () => birthForAge(rng, asOf, SINGLE_AGES) : parentBirth, firstChild)
      : drawCouple(rng, ctx, kind === 'family' ? parentBirth : () => birthForAge(rng, asOf, COUPLE_AGES), partnerBirth, firstChild);
  const children = drawChildren(rng, ctx, births, parents);
  const home = drawHome(rng, tables, asOf);
  const terms = drawCoverageTerms(rng, ctx, parents.adults[0], births);

  const householdPhone = rng.chance(RATES.homePhone) ? drawPhone(rng, home.city) : undefined;
  const subscriberId = ctx.numbers.subscriberId(index);
  const drafts = [...parents.adults, ...children];
  const members = drafts.map((draft, position): SyntheticMember => {
    const personCode = String(draft.role === 'subscriber' ? 1 : draft.role === 'spouse' ? 2 : 3 + children.indexOf(draft)).padStart(2, '0');
    const ordinal = firstOrdinal + position;
    const age = ageOn(draft.birth, asOf);
    const phones: MemberPhone[] = householdPhone && !draft.away ? [{ value: householdPhone, use: 'home' }] : [];
    const adult = draft.role !== 'child' || age >= 18;
    if (age >= 13 && rng.chance(adult ? RATES.adultMobile : RATES.teenMobile)) {
      const areaCity = home.moved && rng.chance(RATES.mobileKeptAreaCode) ? home.moved.city : (draft.away?.city ?? home.city);
      phones.push({ value: drawPhone(rng, areaCity), use: 'mobile' });
    }
    const email = age >= 13 && rng.chance(adult ? RATES.adultEmail : RATES.teenEmail) ? drawEmail(rng, draft.names[0].given[0], draft.names[0].family) : undefined;
    const coverageStart = Math.max(terms.start, draft.birth);
    return {
      ordinal,
      patientId: patientIdOf(ctx.idPrefix, ordinal),
      role: draft.role,
      personCode,
      memberId: `${subscriberId}${personCode}`,
      ...(terms.migration !== undefined && coverageStart < terms.migration
        ? { legacyMemberId: { value: `${ctx.numbers.legacyNumber(index)}${personCode}`, end: isoDate(terms.migration) } }
        : {}),
      gender: draft.gender,
      birthDate: isoDate(draft.birth),
      names: draft.names,
      addresses: memberAddresses(draft, home),
      phones,
      ...(email ? { email } : {}),
      ...(draft.maritalStatus ? { maritalStatus: draft.maritalStatus } : {}),
      ...(draft.birthGroup !== undefined ? { birthGroup: draft.birthGroup } : {}),
      coverage: { start: isoDate(coverageStart), ...(terms.end !== undefined ? { end: isoDate(terms.end) } : {}) },
    };
  });
  if (parents.father) {
    const fatherId = members[drafts.indexOf(parents.father)].patientId;
    drafts.forEach((draft, i) => {
      if (draft.junior) members[i].namesakeOf = fatherId;
    });
  }
  return { index, kind, subscriberId, group: terms.group, plan: terms.plan, members: members.slice(0, Math.max(1, room)) };
}
