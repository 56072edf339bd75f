#!/usr/bin/env node
// Compile ProvenanceRegistry.sol with the pinned solcjs (package.json) and write the artifact
// that workers/chain/contract.py loads:
//
//     node contracts/compile.js            write contracts/ProvenanceRegistry.json
//     node contracts/compile.js --stdout   print the artifact, write nothing (the test's check)
//
// Standard-JSON input with fixed settings, so the same source gives the same bytes anywhere:
// the optimizer's runs and the EVM version are pinned here, not left to the compiler's defaults
// (a newer solc defaults to a newer EVM than some chains, and py-evm, run).
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const NAME = "ProvenanceRegistry";
const SOURCE_FILE = path.join(__dirname, `${NAME}.sol`);
const ARTIFACT_FILE = path.join(__dirname, `${NAME}.json`);

const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
  metadata: { bytecodeHash: "ipfs" },
  outputSelection: {
    "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
  },
};

function compile() {
  const source = fs.readFileSync(SOURCE_FILE);
  const input = {
    language: "Solidity",
    sources: { [`${NAME}.sol`]: { content: source.toString("utf8") } },
    settings: SETTINGS,
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const problems = output.errors || [];
  for (const p of problems) process.stderr.write(p.formattedMessage || p.message);
  if (problems.some((p) => p.severity === "error")) {
    throw new Error(`${NAME}.sol did not compile`);
  }
  const contract = output.contracts[`${NAME}.sol`][NAME];
  const { outputSelection, ...recorded } = SETTINGS;
  return {
    contractName: NAME,
    sourcePath: `contracts/${NAME}.sol`,
    abi: contract.abi,
    bytecode: "0x" + contract.evm.bytecode.object,
    deployedBytecode: "0x" + contract.evm.deployedBytecode.object,
    compiler: { name: "solc", version: solc.version(), settings: recorded },
    sourceSha256: crypto.createHash("sha256").update(source).digest("hex"),
  };
}

const text = JSON.stringify(compile(), null, 2) + "\n";
if (process.argv.includes("--stdout")) {
  process.stdout.write(text);
} else {
  fs.writeFileSync(ARTIFACT_FILE, text);
  process.stderr.write(`wrote ${path.relative(process.cwd(), ARTIFACT_FILE)}\n`);
}
