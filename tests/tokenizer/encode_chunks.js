// encode_chunks.js: the gpt-3-encoder half of tests/t_tokenizer_parity.sh.
//
//   node encode_chunks.js CORPUS PART NPARTS > ids
//
// gpt-3-encoder's encode() is quadratic in its input (it concatenates the
// id array piece by piece), so the corpus is cut into chunks of about 4 K
// characters, at places where GPT-2's pre-tokenizer cuts anyway: before a
// '\n', or before a ' ' that precedes an ASCII letter, when the character
// before is not whitespace. No pre-tokenizer piece spans such a place (a
// piece holds a space or newline only at its start, or in a run of
// whitespace), and nothing decided before it looks past it, so the ids of
// the chunks, concatenated, are the ids of the whole text. This process
// encodes the PART-th of NPARTS runs of consecutive chunks (0-based), so
// several can run in parallel; their outputs, concatenated in order, are
// the ids of the corpus.
'use strict';
const fs = require('fs');
const path = require('path');

const [corpusPath, partArg, nPartsArg] = process.argv.slice(2);
if (!corpusPath) {
  console.error('usage: node encode_chunks.js CORPUS [PART NPARTS]');
  process.exit(2);
}
const part = Number(partArg || 0), nParts = Number(nPartsArg || 1);
const encoder = require(path.join(__dirname, 'node_modules', 'gpt-3-encoder'));

// Whitespace by either definition in play (JavaScript's \s, Unicode
// White_Space), so a cut is safe whichever one a tokenizer uses.
const isSpace = ch => /\s/u.test(ch) || ch === '\u0085';
const isAsciiLetter = ch => /^[A-Za-z]$/.test(ch);

function chunkEnds(text, target) {
  const ends = [];
  let start = 0;
  for (let i = 1; i < text.length; i++) {
    if (i - start < target) continue;
    const c = text[i];
    const safe = (c === '\n' || (c === ' ' && isAsciiLetter(text[i + 1] || ''))) &&
                 !isSpace(text[i - 1]);
    if (safe) {
      ends.push(i);
      start = i;
    }
  }
  ends.push(text.length);
  return ends;
}

const text = fs.readFileSync(corpusPath, 'utf8');
const ends = chunkEnds(text, 4096);
const per = Math.ceil(ends.length / nParts);
const first = part * per, last = Math.min(ends.length, first + per);
const out = [];
for (let k = first; k < last; k++) {
  const start = k === 0 ? 0 : ends[k - 1];
  for (const id of encoder.encode(text.slice(start, ends[k]))) out.push(id);
}
process.stdout.write(out.join(' ') + (out.length ? '\n' : ''));
