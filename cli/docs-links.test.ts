/**
 * Every relative link in README.md and docs/ points at a file of the repository (and, with a
 * #fragment into a Markdown file, at one of its headings, slugged as GitHub does), and no document
 * points outside the repository (issue 17 item 3: a fresh clone has all a reader needs).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function markdownFiles(): string[] {
  const out = [join(ROOT, 'README.md')];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(dir, e.name));
      else if (e.name.endsWith('.md')) out.push(join(dir, e.name));
    }
  };
  walk(join(ROOT, 'docs'));
  return out;
}

/** Prose only: fenced blocks and inline code hold examples, not links. */
function prose(text: string): string {
  return text.replace(/^```[\s\S]*?^```/gm, '').replace(/`[^`\n]*`/g, '');
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
export function headingSlugs(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of text.replace(/^```[\s\S]*?^```/gm, '').matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = (m[1] as string).toLowerCase().replace(/<[^>]+>/g, '').replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

function links(text: string): string[] {
  return [...prose(text).matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1] as string).filter((l) => !/^(https?:|mailto:)/.test(l));
}

describe('documentation links', () => {
  it('slugs headings as GitHub does', () => {
    expect([...headingSlugs('# Campaigns (`npm run verify`)\n## DMA isolation (`impl/hyp/smmu-driver/`, `impl/host/`)\n### Fail-the-k-th sweep\n## A\n## A\n```\n# not a heading\n```')]).toEqual([
      'campaigns-npm-run-verify',
      'dma-isolation-implhypsmmu-driver-implhost',
      'fail-the-k-th-sweep',
      'a',
      'a-1',
    ]);
  });

  it('every relative link of README.md and docs/ reaches a file (and heading) of the repository', () => {
    const files = markdownFiles();
    expect(files.length).toBeGreaterThan(5);
    const broken: string[] = [];
    let checked = 0;
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      for (const link of links(text)) {
        checked++;
        const [path = '', fragment] = link.split('#', 2);
        const target = path === '' ? file : resolve(dirname(file), decodeURIComponent(path));
        const where = `${relative(ROOT, file)}: ${link}`;
        if (!target.startsWith(ROOT)) broken.push(`${where} (outside the repository)`);
        else if (!existsSync(target)) broken.push(`${where} (no such file)`);
        else if (fragment !== undefined && statSync(target).isFile() && target.endsWith('.md') && !headingSlugs(readFileSync(target, 'utf8')).has(fragment)) broken.push(`${where} (no such heading)`);
      }
    }
    expect(broken).toEqual([]);
    expect(checked).toBeGreaterThan(20);
  });

  it('every file of the repository the README names (in prose or in a command) exists', () => {
    const text = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const named = new Set([...text.matchAll(/(?:^|[\s`('"])((?:impl|model|properties|conformance|reports|cli|bench|docs|\.ci|\.github)\/[A-Za-z0-9_.\/-]*[A-Za-z0-9_\/])/gm)].map((m) => m[1] as string));
    // Outputs (not committed) and placeholders (DESIGN, FILE, …) are not files of a clone.
    const files = [...named].filter((p) => !/^(reports\/out|coverage)(\/|$)/.test(p) && !/[A-Z]{3,}/.test(p));
    expect(files.length).toBeGreaterThan(50);
    expect(files.filter((p) => !existsSync(join(ROOT, p)))).toEqual([]);
  });

  it('no document sends the reader outside the repository for what it cites', () => {
    for (const file of markdownFiles()) expect(readFileSync(file, 'utf8'), relative(ROOT, file)).not.toMatch(/\.\.\/shared\/|\bshared\/(seeds|reference)\//);
  });
});
