/**
 * A flattened device tree (DTB) reader, and the virt board facts the harness needs from it:
 * RAM, the SMMUv3 frame, the PCIe ECAM window, the 32-bit MMIO window and the RID → StreamID map.
 * The address map is read from QEMU's own DTB (`-M virt,dumpdtb=FILE`) rather than hard-coded,
 * because it depends on the CPU model and options (qemu-smmuv3-peer.md §2, §7.7).
 *
 * Format facts: Devicetree Specification v0.4 §5 (header, structure block tokens, strings block);
 * PCI bindings: IEEE 1275 PCI binding (3-cell child addresses, space code in bits 25:24 of the
 * first cell) and Linux's Documentation/devicetree/bindings/pci/pci-iommu.txt (`iommu-map`).
 */

export interface FdtNode {
  readonly name: string;
  readonly props: ReadonlyMap<string, Uint8Array>;
  readonly children: readonly FdtNode[];
}

const FDT_MAGIC = 0xd00dfeed;
const FDT_BEGIN_NODE = 1;
const FDT_END_NODE = 2;
const FDT_PROP = 3;
const FDT_NOP = 4;
const FDT_END = 9;

export function parseFdt(blob: Uint8Array): FdtNode {
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  if (dv.getUint32(0) !== FDT_MAGIC) throw new Error('not a flattened device tree (bad magic)');
  const offStruct = dv.getUint32(8);
  const offStrings = dv.getUint32(12);
  const cString = (at: number): string => {
    let end = at;
    while (end < blob.length && blob[end] !== 0) end++;
    return new TextDecoder().decode(blob.subarray(at, end));
  };
  let p = offStruct;
  const align = (): void => {
    p = (p + 3) & ~3;
  };
  type Building = { name: string; props: Map<string, Uint8Array>; children: FdtNode[] };
  const stack: Building[] = [];
  let root: FdtNode | undefined;
  for (;;) {
    const token = dv.getUint32(p);
    p += 4;
    if (token === FDT_BEGIN_NODE) {
      const name = cString(p);
      p += new TextEncoder().encode(name).length + 1;
      align();
      stack.push({ name, props: new Map(), children: [] });
    } else if (token === FDT_END_NODE) {
      const done = stack.pop();
      if (done === undefined) throw new Error('unbalanced FDT_END_NODE');
      const node: FdtNode = { name: done.name, props: done.props, children: done.children };
      const parent = stack[stack.length - 1];
      if (parent === undefined) root = node;
      else parent.children.push(node);
    } else if (token === FDT_PROP) {
      const len = dv.getUint32(p);
      const nameOff = dv.getUint32(p + 4);
      p += 8;
      const value = blob.slice(p, p + len);
      p += len;
      align();
      const top = stack[stack.length - 1];
      if (top === undefined) throw new Error('property outside a node');
      top.props.set(cString(offStrings + nameOff), value);
    } else if (token === FDT_NOP) {
      continue;
    } else if (token === FDT_END) {
      break;
    } else {
      throw new Error(`bad FDT token ${token} at ${p - 4}`);
    }
  }
  if (root === undefined) throw new Error('empty device tree');
  return root;
}

export function cells(value: Uint8Array): number[] {
  const dv = new DataView(value.buffer, value.byteOffset, value.byteLength);
  const out: number[] = [];
  for (let i = 0; i + 4 <= value.length; i += 4) out.push(dv.getUint32(i));
  return out;
}

export function stringList(value: Uint8Array): string[] {
  return new TextDecoder()
    .decode(value)
    .split('\0')
    .filter((s) => s.length > 0);
}

/** Every node with `compatible` containing `compat`, depth first. */
export function findCompatible(root: FdtNode, compat: string): FdtNode[] {
  const out: FdtNode[] = [];
  const visit = (n: FdtNode): void => {
    const c = n.props.get('compatible');
    if (c !== undefined && stringList(c).includes(compat)) out.push(n);
    n.children.forEach(visit);
  };
  visit(root);
  return out;
}

/** A number from 1 or 2 cells (addresses stay below 2^53 on this board). */
function cellsToNumber(cs: readonly number[]): number {
  let v = 0;
  for (const c of cs) v = v * 0x1_0000_0000 + c;
  return v;
}

function regions(value: Uint8Array, addressCells: number, sizeCells: number): { base: number; size: number }[] {
  const cs = cells(value);
  const stride = addressCells + sizeCells;
  const out: { base: number; size: number }[] = [];
  for (let i = 0; i + stride <= cs.length; i += stride) {
    out.push({ base: cellsToNumber(cs.slice(i, i + addressCells)), size: cellsToNumber(cs.slice(i + addressCells, i + stride)) });
  }
  return out;
}

export interface BoardFacts {
  readonly ram: { readonly base: number; readonly size: number };
  readonly smmu: { readonly base: number; readonly size: number };
  readonly ecam: { readonly base: number; readonly size: number };
  /** The first bus number of the ECAM window (`bus-range`). */
  readonly busBase: number;
  /** Non-prefetchable 32-bit memory window for BARs. */
  readonly mem32: { readonly base: number; readonly size: number };
  /** Every PCI memory window (32- and 64-bit): reads there that no BAR claims complete with all ones. */
  readonly pciWindows: readonly { readonly base: number; readonly size: number }[];
  /** RID → StreamID entries of the host bridge's `iommu-map`. */
  readonly iommuMap: readonly { readonly ridBase: number; readonly sidBase: number; readonly length: number }[];
}

function prop(n: FdtNode, name: string): Uint8Array {
  const v = n.props.get(name);
  if (v === undefined) throw new Error(`device tree node ${n.name} has no ${name}`);
  return v;
}

/** The facts of QEMU's `virt` board from its DTB. */
export function boardFacts(root: FdtNode): BoardFacts {
  const ac = cells(prop(root, '#address-cells'))[0] ?? 2;
  const sc = cells(prop(root, '#size-cells'))[0] ?? 2;
  const memory = root.children.find((n) => n.name.startsWith('memory') && n.props.has('reg'));
  if (memory === undefined) throw new Error('no memory node');
  const ram = regions(prop(memory, 'reg'), ac, sc)[0];
  const smmuNode = findCompatible(root, 'arm,smmu-v3')[0];
  if (smmuNode === undefined) throw new Error('no arm,smmu-v3 node (is iommu=smmuv3 set?)');
  const smmu = regions(prop(smmuNode, 'reg'), ac, sc)[0];
  const pcie = findCompatible(root, 'pci-host-ecam-generic')[0];
  if (pcie === undefined) throw new Error('no pci-host-ecam-generic node');
  const ecam = regions(prop(pcie, 'reg'), ac, sc)[0];
  const busRange = cells(prop(pcie, 'bus-range'));
  // ranges: <child (3 cells) parent (ac cells) size (2 cells)>; space code 0b10 is 32-bit memory.
  const rc = cells(prop(pcie, 'ranges'));
  const stride = 3 + ac + 2;
  let mem32: { base: number; size: number } | undefined;
  const pciWindows: { base: number; size: number }[] = [];
  for (let i = 0; i + stride <= rc.length; i += stride) {
    const space = ((rc[i] as number) >>> 24) & 3;
    const w = { base: cellsToNumber(rc.slice(i + 3, i + 3 + ac)), size: cellsToNumber(rc.slice(i + 3 + ac, i + stride)) };
    if (space === 2 && mem32 === undefined) mem32 = w;
    if (space >= 2) pciWindows.push(w);
  }
  const im = cells(prop(pcie, 'iommu-map'));
  const iommuMap: { ridBase: number; sidBase: number; length: number }[] = [];
  for (let i = 0; i + 4 <= im.length; i += 4) iommuMap.push({ ridBase: im[i] as number, sidBase: im[i + 2] as number, length: im[i + 3] as number });
  if (ram === undefined || smmu === undefined || ecam === undefined || mem32 === undefined) throw new Error('incomplete board description');
  return { ram, smmu, ecam, busBase: busRange[0] ?? 0, mem32, pciWindows, iommuMap };
}

/** StreamID of a requester ID through `iommu-map`; undefined when unmapped. */
export function streamIdOf(facts: BoardFacts, rid: number): number | undefined {
  for (const e of facts.iommuMap) if (rid >= e.ridBase && rid < e.ridBase + e.length) return e.sidBase + (rid - e.ridBase);
  return undefined;
}
