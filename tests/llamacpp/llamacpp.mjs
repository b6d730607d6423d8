// llama.cpp (node-llama-cpp's prebuilt CPU build) on a GGUF file, for the
// export tests:
//   node llamacpp.mjs MODEL.gguf tokenize TEXT OUT.i32
//       the token ids llama.cpp gives TEXT (int32 LE), with the model's
//       default special tokens as lmc tokenize adds them (BOS/EOS when the
//       GGUF says add_bos/add_eos; special tokens in the text recognized)
//   node llamacpp.mjs MODEL.gguf ppl IDS.i32 SEQLEN WINDOWS
//       lmc's perplexity protocol (README): the first WINDOWS windows of
//       SEQLEN ids, each scored on its SEQLEN - 1 next-token predictions,
//       ppl = exp(total NLL / scored); prints one JSON line
// The directory holding node_modules is $LMC_LLAMACPP_DIR (install.sh).
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const dir = process.env.LMC_LLAMACPP_DIR;
if (!dir) {
    console.error("llamacpp.mjs: set LMC_LLAMACPP_DIR (tests/llamacpp/install.sh prints it)");
    process.exit(2);
}
const nlc = await import(pathToFileURL(path.join(dir, "node_modules/node-llama-cpp/dist/index.js")).href);
const [modelPath, mode, ...rest] = process.argv.slice(2);
const threads = Number(process.env.LMC_LLAMACPP_THREADS || 2);

const llama = await nlc.getLlama({
    gpu: false, build: "never", usePrebuiltBinaries: true, skipDownload: true,
    logLevel: nlc.LlamaLogLevel.error, progressLogs: false,
});
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });

function readIds(file) {
    const b = fs.readFileSync(file);
    if (b.length % 4) throw new Error(`${file}: size is not a multiple of 4`);
    const a = new Int32Array(b.buffer, b.byteOffset, b.length / 4);
    return Array.from(a);
}

if (mode === "tokenize") {
    const [textFile, outFile] = rest;
    const text = fs.readFileSync(textFile, "utf8");
    let ids = Array.from(model.tokenize(text, true));
    if (model.tokens.shouldPrependBosToken && model.tokens.bos != null) ids = [model.tokens.bos, ...ids];
    if (model.tokens.shouldAppendEosToken && model.tokens.eos != null) ids.push(model.tokens.eos);
    fs.writeFileSync(outFile, Buffer.from(Int32Array.from(ids).buffer));
    console.log(JSON.stringify({ tokens: ids.length }));
} else if (mode === "ppl") {
    const [idsFile, seqlenS, windowsS] = rest;
    const ids = readIds(idsFile);
    const seqlen = Number(seqlenS);
    const nwin = Math.min(Number(windowsS), Math.floor(ids.length / seqlen));
    if (!(seqlen > 1) || !(nwin > 0)) throw new Error(`need seqlen > 1 and at least one window (${ids.length} ids)`);
    const context = await model.createContext({ contextSize: seqlen, batchSize: seqlen, sequences: 1, threads });
    const seq = context.getSequence();
    // the plain softmax of the logits: no sampler changes the distribution
    const next = { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0 } };
    let nll = 0, scored = 0;
    const t0 = Date.now();
    for (let w = 0; w < nwin; w++) {
        const win = ids.slice(w * seqlen, (w + 1) * seqlen);
        await seq.clearHistory();
        const input = win.map((t, i) => (i < seqlen - 1 ? [t, { generateNext: next }] : t));
        const res = await seq.controlledEvaluate(input);
        for (let i = 0; i < seqlen - 1; i++) {
            const p = res[i].next.probabilities.get(win[i + 1]);
            if (!(p > 0)) throw new Error(`window ${w} position ${i}: probability ${p}`);
            nll -= Math.log(p);
            scored++;
        }
    }
    console.log(JSON.stringify({ ppl: Math.exp(nll / scored), windows: nwin, seqlen, scored,
                                 nll, seconds: (Date.now() - t0) / 1000 }));
} else {
    console.error("usage: node llamacpp.mjs MODEL.gguf tokenize TEXT OUT.i32 | ppl IDS.i32 SEQLEN WINDOWS");
    process.exit(2);
}
await model.dispose();
await llama.dispose();
