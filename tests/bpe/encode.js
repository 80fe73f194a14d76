// encode.js - encodes a corpus with two independent GPT-2 tokenizers, for
// tests/test_bpe.c to compare with semd's.
//
// usage: node encode.js CORPUS
// The texts: every line of CORPUS (without its newline), then runs of 25
// lines with their newlines, then the whole file. Each gives one JSON line
// {"text": ..., "a": [ids], "b": [ids] or null}: "a" from gpt-tokenizer
// (r50k_base, GPT-2's encoding), "b" from gpt-3-encoder, which is left out
// (null) for the whole file because its running time grows with the square
// of the token count.
'use strict';
const fs = require('fs');
const r50k = require('gpt-tokenizer/cjs/encoding/r50k_base');
const gpt3 = require('gpt-3-encoder');

const text = fs.readFileSync(process.argv[2], 'utf8');
const lines = text.split('\n');
if (lines[lines.length - 1] === '') lines.pop();
const texts = lines.slice();
for (let i = 0; i < lines.length; i += 25)
    texts.push(lines.slice(i, i + 25).join('\n') + '\n');
const out = [];
for (const t of texts)
    out.push({ text: t, a: r50k.encode(t, { disallowedSpecial: new Set() }),
               b: gpt3.encode(t) });
out.push({ text: text, a: r50k.encode(text, { disallowedSpecial: new Set() }),
           b: null });
process.stdout.write(out.map(o => JSON.stringify(o)).join('\n') + '\n');
