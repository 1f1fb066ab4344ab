/**
 * The abstraction's comparisons settle equal states without building text (issue 15): these
 * tests pin that the shortcuts still see every difference the text comparison sees.
 */
import { describe, expect, it } from 'vitest';
import { apply, type ModelState, type VmRecord } from '../model/index.js';
import { abstractState, diffStates, pagesAgree } from './abstraction.js';
import { smallMachine } from './machine.js';
import { bootPair } from './runner.js';

const PFN = 0x4000_0000 / 4096 + 8;

function withLeaves(s: ModelState, leaves: VmRecord['leaves']): ModelState {
  const vm: VmRecord = { handle: 0, protected: false, leaves, metadataPages: 3, tablePages: 2 };
  return { ...s, vms: new Map([[0, vm]]) };
}

describe('the abstraction comparisons', () => {
  it('pagesAgree holds on a booted pair and fails on a page the model moved alone', () => {
    const { model, system } = bootPair(smallMachine());
    expect(pagesAgree(model, system, [PFN, PFN + 1])).toBe(true);
    const moved = apply(model, { kind: 'host_donate_hyp', pfn: PFN, nrPages: 1 });
    expect(moved.ret).toBe(0);
    expect(pagesAgree(moved.state, system, [PFN + 1])).toBe(true);
    expect(pagesAgree(moved.state, system, [PFN + 1, PFN])).toBe(false);
    expect(diffStates(moved.state, abstractState(system, moved.state.config))).toContain(`host state of pfn 0x${PFN.toString(16)}: model NOPAGE, system -`);
  });

  it('diffStates sees equal leaves built apart as equal, and a leaf that differs in one field, or sits at another gfn, as different', () => {
    const { model } = bootPair(smallMachine());
    const leaf = { kind: 'map', pfn: PFN, nrPages: 1, state: 'SHARED_BORROWED', prot: 'rw' } as const;
    const a = withLeaves(model, new Map([[5, leaf]]));
    expect(diffStates(a, withLeaves(model, new Map([[5, { ...leaf }]])))).toEqual([]);
    expect(diffStates(a, withLeaves(model, new Map([[5, { ...leaf, prot: 'r' }]])))).toEqual([`vm 0 leaf at gfn 0x5: model ${JSON.stringify(leaf)}, system ${JSON.stringify({ ...leaf, prot: 'r' })}`]);
    expect(diffStates(a, withLeaves(model, new Map([[6, leaf]])))).toHaveLength(2);
    expect(diffStates(a, withLeaves(model, new Map([[5, { kind: 'poison' }]])))).toHaveLength(1);
  });
});
