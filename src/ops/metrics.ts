import type { MiddlewareHandler } from 'hono';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics of one app instance. Labels are route patterns, methods and statuses: never ids. */
export interface Metrics {
  registry: Registry;
  requests: Counter<'route' | 'method' | 'status'>;
  duration: Histogram<'route' | 'method' | 'status'>;
  /** $member-match attempts refused by the brute-force guard (HRex mm-7); alert on `increase(baton_member_match_throttled_total[5m]) > 0`. */
  memberMatchThrottled: Counter;
  /** Requester workflow (issue 7): Task stage transitions, step durations, retries, SLA breaches and the job queue's own time. */
  workflowTransitions: Counter<'stage'>;
  workflowSteps: Histogram<'step' | 'result'>;
  workflowRetries: Counter<'code'>;
  workflowSlaBreaches: Counter<'stage'>;
  workflowQueueSeconds: Histogram<'phase'>;
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
    workflowTransitions: new Counter({ name: 'baton_workflow_transitions_total', help: 'Payer-to-payer request Tasks entering a stage', labelNames: ['stage'], registers: [registry] }),
    workflowSteps: new Histogram({
      name: 'baton_workflow_step_duration_seconds',
      help: 'Duration of workflow steps (partner calls and imports included), by step and result',
      labelNames: ['step', 'result'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers: [registry],
    }),
    workflowRetries: new Counter({ name: 'baton_workflow_retries_total', help: 'Workflow steps scheduled again after a retryable failure, by error code', labelNames: ['code'], registers: [registry] }),
    workflowSlaBreaches: new Counter({ name: 'baton_workflow_sla_breaches_total', help: 'Payer-to-payer requests past the deadline of their next stage', labelNames: ['stage'], registers: [registry] }),
    workflowQueueSeconds: new Histogram({
      name: 'baton_workflow_queue_seconds',
      help: "The job queue's own time per step: claiming a job (claim) and recording its result with the Task version (record)",
      labelNames: ['phase'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
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
