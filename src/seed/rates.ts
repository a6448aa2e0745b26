/**
 * How often the synthetic population shows each trait. Rough US-like figures, chosen so that the
 * cases identity resolution finds hard (twins, Jr/Sr, name changes, moves, common names) occur
 * often enough to be measured in a population of tens of thousands.
 */
export const RATES = {
  /** A birth in a family is a twin birth (US: about 3%). */
  twinBirth: 0.03,
  /** Twins of the same sex. */
  sameSexTwins: 0.65,
  /** Twins given names with the same initial. */
  twinsSameInitial: 0.3,
  /** The eldest son of a father in the household carries his father's full name, with suffix Jr. */
  junior: 0.08,
  /** …and the father then carries Sr. */
  seniorSuffix: 0.5,
  /** A couple is of the same sex. */
  sameSexCouple: 0.03,
  /** A wife takes her husband's surname at marriage (her maiden name kept as history)… */
  tookSpouseName: 0.7,
  /** …or joins both with a hyphen (otherwise she keeps hers). */
  hyphenatedName: 0.08,
  /** In a same-sex couple, the spouse takes the subscriber's surname. */
  sameSexTookName: 0.3,
  /** A single woman of 30 or more has gone back to her own name after a divorce. */
  divorcedRevertedName: 0.12,
  /** A single mother's children carry their father's surname, not hers… */
  childrenFatherSurname: 0.45,
  /** …and she once carried it herself (married name, kept as history). */
  singleMotherOldMarriedName: 0.5,
  /** A surname outside the table of common surnames (the long tail of rare names). */
  rareSurname: 0.25,
  /** A surname from the compound-capable list pairs with a second (e.g. "Garcia Lopez"). */
  compoundSurname: 0.12,
  /** A full middle name, else a middle initial, else none. */
  middleName: 0.45,
  middleInitial: 0.2,
  /** The household moved: its previous address is kept with its period. */
  moved: 0.3,
  /** A previous address in the same city (otherwise another city). */
  movedWithinCity: 0.6,
  /** An adult dependent (18 and over) lives at an address of their own. */
  adultChildAway: 0.25,
  /** Address with a unit (apartment, suite). */
  unit: 0.18,
  /** Street with a directional prefix (N, SW…). */
  directional: 0.1,
  /** ZIP+4 rather than ZIP5. */
  zipPlus4: 0.3,
  /** The household's members carry a legacy member id from before an id migration. */
  legacyMemberId: 0.1,
  /** The household's coverage has ended: former members. */
  formerMember: 0.22,
  /** A household landline, shared by its members. */
  homePhone: 0.4,
  /** A mobile phone, for adults and for children of 13 or more. */
  adultMobile: 0.85,
  teenMobile: 0.55,
  /** A mobile that keeps the area code of the previous city after a move. */
  mobileKeptAreaCode: 0.5,
  /** An email address, for adults and for children of 13 or more. */
  adultEmail: 0.35,
  teenEmail: 0.15,
  /** A subscriber of 65 or more is on a Medicare Advantage plan. */
  medicareAdvantage: 0.8,
  /** A commercial subscriber buys individually rather than through an employer group. */
  individualMarket: 0.15,
} as const;
