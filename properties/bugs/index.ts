/** Every registered test-only bug (ownership + DMA): what `--bug NAME`, the corpus and the kill matrix use. */
import { DMA_BUGS } from './dma-bugs.js';
import { type InjectedBug, OWNERSHIP_BUGS } from './ownership-bugs.js';

export const ALL_BUGS: readonly InjectedBug[] = [...OWNERSHIP_BUGS, ...DMA_BUGS];

export function findInjectedBug(name: string): InjectedBug | undefined {
  return ALL_BUGS.find((b) => b.name === name);
}
