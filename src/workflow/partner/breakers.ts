import { BrokenCircuitError, CircuitState, ConsecutiveBreaker, type CircuitBreakerPolicy, circuitBreaker, handleWhen } from 'cockatiel';
import { PartnerError } from './types.ts';

export interface BreakerSettings {
  /** Consecutive retryable failures that open a partner's circuit. */
  consecutiveFailures: number;
  /** How long an open circuit fails fast before one trial call (half-open) may go through. */
  halfOpenAfterMs: number;
}

const DEFAULT_BREAKER_SETTINGS: BreakerSettings = { consecutiveFailures: 5, halfOpenAfterMs: 30_000 };

export type BreakerState = 'closed' | 'open' | 'half-open';

interface PartnerBreaker {
  policy: CircuitBreakerPolicy;
  openedAtMs: number;
}

/**
 * One circuit breaker per partner endpoint (cockatiel), so a partner that is down is not
 * hammered by every Task waiting on it. Only retryable failures (network, timeouts, 429, 5xx)
 * count: a 404 or a 422 proves the partner is up. While a circuit is open, calls fail at once
 * with a retryable `circuit-open` PartnerError whose retryAfterMs is the time left until the
 * trial call; a successful trial closes the circuit, a failed one opens it again. The state is
 * the process's own (a cache that may be lost: each process learns a partner is down by itself).
 */
export class PartnerBreakers {
  private readonly breakers = new Map<string, PartnerBreaker>();
  private readonly settings: BreakerSettings;

  constructor(settings: Partial<BreakerSettings> = {}) {
    this.settings = { ...DEFAULT_BREAKER_SETTINGS, ...settings };
  }

  /** Runs one request to the partner through its breaker. */
  async execute<T>(endpointId: string, request: () => Promise<T>): Promise<T> {
    const breaker = this.breaker(endpointId);
    try {
      return await breaker.policy.execute(request);
    } catch (error) {
      if (!(error instanceof BrokenCircuitError)) throw error;
      const retryAfterMs = Math.max(0, breaker.openedAtMs + this.settings.halfOpenAfterMs - Date.now());
      throw new PartnerError('retryable', 'circuit-open', `Partner ${endpointId} is failing; calls are held back until its circuit half-opens`, { retryAfterMs });
    }
  }

  state(endpointId: string): BreakerState {
    const state = this.breakers.get(endpointId)?.policy.state ?? CircuitState.Closed;
    if (state === CircuitState.HalfOpen) return 'half-open';
    return state === CircuitState.Closed ? 'closed' : 'open';
  }

  private breaker(endpointId: string): PartnerBreaker {
    let breaker = this.breakers.get(endpointId);
    if (!breaker) {
      const policy = circuitBreaker(
        // A call its own caller cancelled says nothing about the partner.
        handleWhen((error) => error instanceof PartnerError && error.errorClass === 'retryable' && error.code !== 'cancelled'),
        { halfOpenAfter: this.settings.halfOpenAfterMs, breaker: new ConsecutiveBreaker(this.settings.consecutiveFailures) },
      );
      const created: PartnerBreaker = { policy, openedAtMs: 0 };
      policy.onBreak(() => {
        created.openedAtMs = Date.now();
      });
      breaker = created;
      this.breakers.set(endpointId, breaker);
    }
    return breaker;
  }
}
