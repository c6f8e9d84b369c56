#!/bin/bash -eu
# Builds every cargo-fuzz target of fuzz/ with the engine's flags and copies
# it, with its committed seed corpus, to $OUT (ClusterFuzzLite / OSS-Fuzz).
cd "$SRC/vdisim"
cargo fuzz build --fuzz-dir fuzz -O
release=fuzz/target/x86_64-unknown-linux-gnu/release
for target in $(cargo fuzz list --fuzz-dir fuzz); do
    cp "$release/$target" "$OUT/"
    if [ -d "fuzz/corpus/$target" ]; then
        (cd "fuzz/corpus/$target" && zip -q -j "$OUT/${target}_seed_corpus.zip" ./*)
    fi
done
