import type { Task } from '@medplum/fhirtypes';
import { TASK_STAGE_SYSTEM } from '../operations/member-match/review.ts';

/**
 * The stages of a payer-to-payer request (DESIGN.md, "Lifecycle of a payer-to-payer request"):
 * Task.status follows FHIR, Task.businessStatus names the stage. On the requester side the
 * partner is chosen before the member can be matched at it, so a request runs
 * created → validated → routed → matched → acknowledged → fulfilled, with manual-review,
 * failed and dead-lettered off the path.
 */
export type Stage = 'created' | 'validated' | 'matched' | 'manual-review' | 'routed' | 'acknowledged' | 'fulfilled' | 'failed' | 'dead-lettered' | 'cancelled';

export const STAGE_STATUS: Record<Stage, Task['status']> = {
  created: 'requested',
  validated: 'accepted',
  routed: 'in-progress',
  matched: 'in-progress',
  'manual-review': 'on-hold',
  acknowledged: 'in-progress',
  fulfilled: 'completed',
  failed: 'failed',
  'dead-lettered': 'failed',
  cancelled: 'cancelled',
};

/** Where a stage may go next. Failures can happen anywhere; an operator re-drives a dead-lettered or held request. */
const NEXT: Record<Stage, readonly Stage[]> = {
  created: ['validated', 'failed', 'dead-lettered', 'cancelled'],
  validated: ['routed', 'failed', 'dead-lettered', 'cancelled'],
  routed: ['matched', 'manual-review', 'failed', 'dead-lettered', 'cancelled'],
  matched: ['acknowledged', 'failed', 'dead-lettered', 'cancelled'],
  'manual-review': ['routed', 'matched', 'failed', 'cancelled'],
  acknowledged: ['fulfilled', 'manual-review', 'failed', 'dead-lettered', 'cancelled'],
  fulfilled: [],
  failed: [],
  'dead-lettered': ['created', 'validated', 'routed', 'matched', 'acknowledged', 'failed', 'cancelled'],
  cancelled: [],
};

export const FINAL_STAGES: readonly Stage[] = ['fulfilled', 'failed', 'cancelled'];

export function mayMove(from: Stage, to: Stage): boolean {
  return NEXT[from].includes(to);
}

export function stageOf(task: Task): Stage | undefined {
  const code = task.businessStatus?.coding?.find((c) => c.system === TASK_STAGE_SYSTEM)?.code;
  return code !== undefined && code in STAGE_STATUS ? (code as Stage) : undefined;
}
