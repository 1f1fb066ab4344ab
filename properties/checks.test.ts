/**
 * The host stage-2 rules of the well-formedness check, on a system broken by hand: a page whose
 * vmemmap says the host lost it must be neither mapped by a valid host leaf nor left without
 * its annotation.
 */
import { describe, expect, it } from 'vitest';
import { PKVM_NOPAGE } from '../impl/hyp/vmemmap.js';
import { checkWellFormed, viewTables } from './checks.js';
import { executeOnSystem } from './execute.js';
import { smallMachine } from './machine.js';
import { bootPair } from './runner.js';

const PFN = 0x4000_0000 / 4096 + 20;

describe('checkWellFormed on the host stage-2', () => {
  it('holds on a booted system after a host access, and reports a NOPAGE page the host still maps and that carries no annotation', () => {
    const { system } = bootPair(smallMachine());
    expect(executeOnSystem(system, { kind: 'host_access', addr: PFN * 4096, access: 'read' }, (p) => system.stepHardware(p))).toBe(0);
    expect(checkWellFormed(system, viewTables(system))).toEqual([]);
    // The host fault mapped a block around the page; now the vmemmap alone says the host lost it.
    system.vmemmap.setHostState(PFN, PKVM_NOPAGE);
    const messages = checkWellFormed(system, viewTables(system)).map((v) => v.message);
    expect(messages.filter((m) => m.startsWith(`host stage-2 maps pfn 0x${PFN.toString(16)} `))).toHaveLength(1);
    expect(messages).toContain(`pfn 0x${PFN.toString(16)} is NOPAGE for the host but carries no annotation`);
    // A second lost page in the same block is reported too, in ascending order.
    system.vmemmap.setHostState(PFN + 1, PKVM_NOPAGE);
    const mapped = checkWellFormed(system, viewTables(system)).filter((v) => v.message.startsWith('host stage-2 maps'));
    expect(mapped.map((v) => v.message.split(' ')[4])).toEqual([`0x${PFN.toString(16)}`, `0x${(PFN + 1).toString(16)}`]);
  });
});
