import nicknameTable from '../../config/matching/nicknames.json' with { type: 'json' };

/**
 * Given-name equivalence from a data table of groups (config/matching/nicknames.json). Two names
 * are equivalent when one group holds both; groups are never merged transitively, because Al
 * is short for Albert and for Alfred while Albert is not Alfred.
 */
export interface NicknameIndex {
  areNicknames(a: string, b: string): boolean;
}

export class NicknameTableError extends Error {
  override name = 'NicknameTableError';
}

export function nicknameIndex(groups: readonly (readonly string[])[]): NicknameIndex {
  const groupsByName = new Map<string, number[]>();
  groups.forEach((group, index) => {
    for (const name of group) {
      // Names are looked up after normalization, so a table entry that is not normalized could never match.
      if (!/^[a-z]+$/.test(name)) throw new NicknameTableError(`nickname group ${index}: "${name}" is not a lower-case ASCII name`);
      const memberships = groupsByName.get(name) ?? [];
      memberships.push(index);
      groupsByName.set(name, memberships);
    }
  });
  return {
    areNicknames(a, b) {
      if (a === b) return false;
      const groupsOfA = groupsByName.get(a);
      const groupsOfB = groupsByName.get(b);
      return groupsOfA !== undefined && groupsOfB !== undefined && groupsOfA.some((group) => groupsOfB.includes(group));
    },
  };
}

export const defaultNicknames: NicknameIndex = nicknameIndex(nicknameTable.groups);
