/**
 * Gzipped NDJSON in members (docs/archive.md): a file of gzip members one after another is one
 * valid .ndjson.gz (RFC 1952 allows any number; zcat, gzip -d, DuckDB and Spark read it whole), and
 * each member is a gzip stream on its own, so a reader that knows a member's byte range can fetch
 * and gunzip just that. The runtime's CompressionStream does the compressing: no dependency.
 */

import { utf8 } from "./bytes";

const decoder = new TextDecoder();

async function through(bytes: Uint8Array, transform: CompressionStream | DecompressionStream): Promise<Uint8Array> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(transform);
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

export function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  return through(bytes, new CompressionStream("gzip"));
}

export function gunzip(bytes: Uint8Array): Promise<Uint8Array> {
  return through(bytes, new DecompressionStream("gzip"));
}

/** Where a member sits in its file. */
export interface MemberRange {
  offset: number;
  length: number;
}

/**
 * One file of members, a member per group of records, each record one JSON line. The ranges are
 * in the groups' order.
 */
export async function gzipMembers(
  groups: readonly (readonly unknown[])[],
): Promise<{ body: Uint8Array; ranges: MemberRange[] }> {
  const members = await Promise.all(
    groups.map((records) => gzip(utf8(records.map((record) => `${JSON.stringify(record)}\n`).join("")))),
  );
  return joinMembers(members);
}

/** Members (gzipped already) one after another in one file, with where each sits. */
export function joinMembers(members: readonly Uint8Array[]): { body: Uint8Array; ranges: MemberRange[] } {
  const body = new Uint8Array(members.reduce((total, member) => total + member.length, 0));
  const ranges: MemberRange[] = [];
  let offset = 0;
  for (const member of members) {
    body.set(member, offset);
    ranges.push({ offset, length: member.length });
    offset += member.length;
  }
  return { body, ranges };
}

/** The records of one member (its bytes alone, as a range read returns them). */
export async function readMember<T>(member: Uint8Array): Promise<T[]> {
  const text = decoder.decode(await gunzip(member));
  return text
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as T);
}
