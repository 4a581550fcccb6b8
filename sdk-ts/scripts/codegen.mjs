// Protobuf code generation for the TypeScript SDK: runs `buf generate` (the
// npm-installed @bufbuild/buf, with the local protoc-gen-es plugin of
// buf.gen.yaml) on ../proto/proto into a temporary directory, then either
// brings gen/ in line with it (default) or, with --check, compares the two
// and exits 1 when gen/ is stale. `cargo xtask codegen [--check]` runs this.
// Exit codes: 0 up to date (after writing, without --check), 1 stale (--check),
// 2 codegen failed.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, mkdirSync, writeFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const genDir = join(root, "gen");
const check = process.argv.includes("--check");

/** Files under dir, as relative path -> contents. */
function listFiles(dir) {
  const out = new Map();
  const walk = (d) => {
    let entries;
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const name of entries) {
      const path = join(d, name);
      if (statSync(path).isDirectory()) walk(path);
      else out.set(relative(dir, path), readFileSync(path));
    }
  };
  walk(dir);
  return out;
}

const tmp = mkdtempSync(join(tmpdir(), "pike-sdk-codegen-"));
try {
  const buf = join(root, "node_modules", ".bin", "buf");
  execFileSync(buf, ["generate", join(root, "..", "proto", "proto"), "--template", join(root, "buf.gen.yaml"), "-o", tmp], {
    cwd: root,
    stdio: ["ignore", "inherit", "inherit"],
  });
  const fresh = listFiles(join(tmp, "gen"));
  const existing = listFiles(genDir);
  const stale = [];
  const missing = [];
  const extra = [];
  for (const [name, contents] of fresh) {
    const old = existing.get(name);
    if (old === undefined) missing.push(name);
    else if (!old.equals(contents)) stale.push(name);
  }
  for (const name of existing.keys()) if (!fresh.has(name)) extra.push(name);
  const changed = stale.length + missing.length + extra.length;
  if (check) {
    if (changed === 0) {
      console.log(`codegen: sdk-ts/gen/ is up to date (${fresh.size} files)`);
    } else {
      console.error("error: generated code in sdk-ts/gen/ is out of date:");
      for (const n of stale) console.error(`  stale (contents differ): sdk-ts/gen/${n}`);
      for (const n of missing) console.error(`  missing: sdk-ts/gen/${n}`);
      for (const n of extra) console.error(`  extra (no longer generated): sdk-ts/gen/${n}`);
      console.error("hint: run `cargo xtask codegen` (or `npm run codegen` in sdk-ts) and commit the result");
      process.exitCode = 1;
    }
  } else {
    for (const [name, contents] of fresh) {
      const path = join(genDir, name);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, contents);
    }
    for (const name of extra) rmSync(join(genDir, name));
    console.log(`codegen: sdk-ts/gen/ is up to date (${fresh.size} files, ${changed} changed)`);
  }
} catch (error) {
  console.error(`error: TypeScript codegen failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 2;
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
