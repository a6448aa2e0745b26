import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PartnerBreakers } from '../../../src/workflow/partner/breakers.ts';
import { PartnerTokens } from '../../../src/workflow/partner/tokens.ts';
import { NOBODY, OKAFOR, type PartnerSetup, matchParameters, partnerError, setUpPartner } from './partner-setup.ts';

let setup: PartnerSetup;
let breakers: PartnerBreakers;
const call = { idempotencyKey: 'breaker' };
const HALF_OPEN_AFTER_MS = 300;
const unavailable = { kind: 'respond', status: 503 } as const;

beforeAll(async () => {
  setup = await setUpPartner();
});
afterAll(() => setup.close());
beforeEach(() => {
  setup.partner.calls.length = 0;
  breakers = new PartnerBreakers({ consecutiveFailures: 3, halfOpenAfterMs: HALF_OPEN_AFTER_MS });
});

const client = (tokens = new PartnerTokens()) => setup.client({}, { breakers, tokens });
const match = (tokens?: PartnerTokens) => client(tokens).memberMatch(matchParameters(OKAFOR), call);

describe('per-partner circuit breaker', () => {
  it('opens after consecutive retryable failures and then fails fast without calling the partner', async () => {
    const tokens = new PartnerTokens();
    setup.partner.script('member-match', unavailable, 3);
    for (let i = 0; i < 3; i++) expect(await partnerError(match(tokens))).toMatchObject({ code: 'unavailable' });
    expect(breakers.state('partner-1')).toBe('open');
    const error = await partnerError(match(tokens));
    expect(error).toMatchObject({ errorClass: 'retryable', code: 'circuit-open' });
    expect(error.retryAfterMs).toBeGreaterThan(0);
    expect(error.retryAfterMs).toBeLessThanOrEqual(HALF_OPEN_AFTER_MS);
    expect(setup.partner.count('member-match')).toBe(3);
  });

  it('half-opens after the configured time: a successful trial closes it', async () => {
    const tokens = new PartnerTokens();
    setup.partner.script('member-match', unavailable, 3);
    for (let i = 0; i < 3; i++) await partnerError(match(tokens));
    await new Promise((resolve) => setTimeout(resolve, HALF_OPEN_AFTER_MS + 20));
    expect(await match(tokens)).toMatchObject({ memberId: 'okafor' });
    expect(breakers.state('partner-1')).toBe('closed');
    expect(await match(tokens)).toMatchObject({ memberId: 'okafor' });
  });

  it('opens again at once when the trial fails', async () => {
    const tokens = new PartnerTokens();
    setup.partner.script('member-match', unavailable, 4);
    for (let i = 0; i < 3; i++) await partnerError(match(tokens));
    await new Promise((resolve) => setTimeout(resolve, HALF_OPEN_AFTER_MS + 20));
    expect(await partnerError(match(tokens))).toMatchObject({ code: 'unavailable' });
    expect(await partnerError(match(tokens))).toMatchObject({ code: 'circuit-open' });
    expect(setup.partner.count('member-match')).toBe(4);
  });

  it('is not tripped by non-retryable answers: the partner is up', async () => {
    const tokens = new PartnerTokens();
    for (let i = 0; i < 5; i++) expect(await partnerError(client(tokens).memberMatch(matchParameters(NOBODY), { idempotencyKey: `nobody-${i}` }))).toMatchObject({ code: 'no-match' });
    setup.partner.script('member-match', { kind: 'respond', status: 404 }, 5);
    for (let i = 0; i < 5; i++) await partnerError(match(tokens));
    expect(breakers.state('partner-1')).toBe('closed');
    expect(setup.partner.count('member-match')).toBe(10);
  });

  it('counts a success in between: only consecutive failures open it', async () => {
    const tokens = new PartnerTokens();
    setup.partner.script('member-match', unavailable, 2);
    await partnerError(match(tokens));
    await partnerError(match(tokens));
    await match(tokens);
    setup.partner.script('member-match', unavailable, 2);
    await partnerError(match(tokens));
    await partnerError(match(tokens));
    expect(breakers.state('partner-1')).toBe('closed');
  });

  it('is tripped by a partner that cannot be reached, token endpoint included, and keeps other partners apart', async () => {
    const down = await setup.startPartner();
    await down.down();
    const unreachable = setup.client({ id: 'partner-down', baseUrl: down.baseUrl, tokenUrl: down.tokenUrl }, { breakers });
    for (let i = 0; i < 3; i++) expect(await partnerError(unreachable.memberMatch(matchParameters(OKAFOR), call))).toMatchObject({ code: 'network' });
    expect(await partnerError(unreachable.memberMatch(matchParameters(OKAFOR), call))).toMatchObject({ code: 'circuit-open' });
    expect(breakers.state('partner-down')).toBe('open');
    expect(await match()).toMatchObject({ memberId: 'okafor' });
    expect(breakers.state('partner-1')).toBe('closed');
  });
});
