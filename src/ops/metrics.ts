import type { MiddlewareHandler } from 'hono';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics of one app instance. Labels are route patterns, methods and statuses: never ids. */
export interface Metrics {
  registry: Registry;
  requests: Counter<'route' | 'method' | 'status'>;
  duration: Histogram<'route' | 'method' | 'status'>;
  /** $member-match attempts refused by the brute-force guard (HRex mm-7); alert on `increase(baton_member_match_throttled_total[5m]) > 0`. */
  memberMatchThrottled: Counter;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'baton_' });
  return {
    registry,
    requests: new Counter({ name: 'baton_http_requests_total', help: 'HTTP requests answered', labelNames: ['route', 'method', 'status'], registers: [registry] }),
    duration: new Histogram({
      name: 'baton_http_request_duration_seconds',
      help: 'HTTP request latency',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    memberMatchThrottled: new Counter({
      name: 'baton_member_match_throttled_total',
      help: '$member-match requests refused by the brute-force guard (one client trying many cards for the same demographics)',
      registers: [registry],
    }),
  };
}

/** The matched route pattern (`/fhir/:type/:id`), so a label never carries an id. */
export function routeLabel(routePath: string | undefined, status: number): string {
  if (!routePath || routePath.endsWith('*')) return status === 404 ? 'unmatched' : 'other';
  // `/:type{[A-Z][A-Za-z]+}` → `/:type`: the pattern's regex is noise in a label.
  return routePath.replace(/\{[^}]*\}/g, '');
}

export function metricsMiddleware(metrics: Metrics): MiddlewareHandler {
  return async (c, next) => {
    const start = performance.now();
    await next();
    const labels = { route: routeLabel(c.req.routePath, c.res.status), method: c.req.method, status: String(c.res.status) };
    metrics.requests.inc(labels);
    metrics.duration.observe(labels, (performance.now() - start) / 1000);
  };
}
