import { systemAccess } from '../fhir/access.ts';
import { type FhirContext, update } from '../fhir/interactions.ts';
import { topicAsBasic, topics } from './topics.ts';

/**
 * Stores each topic of config/topics as a Basic (Backport IG 1.2), so a client reads and searches
 * topics through the REST API (`GET /Basic?code=SubscriptionTopic`). An unchanged topic writes
 * no new version.
 */
export async function ensureTopicResources(ctx: FhirContext): Promise<number> {
  for (const topic of topics().values()) await update({ ...ctx, access: systemAccess }, 'Basic', topicAsBasic(topic).id, topicAsBasic(topic));
  return topics().size;
}
