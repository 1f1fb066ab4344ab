/**
 * A Map that can tell what changed: while `changeLog` is armed, every key set or deleted is
 * recorded once, with the value it had before its first change (undefined: absent). Observation
 * only (the runner's incremental checks use it for the hypervisor's stage-1); disarmed (null) it
 * is a plain Map with one null check per write.
 */
export class ObservedMap<K, V> extends Map<K, V> {
  changeLog: Map<K, V | undefined> | null = null;

  override set(key: K, value: V): this {
    const log = this.changeLog;
    if (log !== null && !log.has(key)) log.set(key, super.get(key));
    return super.set(key, value);
  }

  override delete(key: K): boolean {
    const log = this.changeLog;
    if (log !== null && !log.has(key)) log.set(key, super.get(key));
    return super.delete(key);
  }

  override clear(): void {
    for (const key of this.keys()) this.delete(key);
  }
}
