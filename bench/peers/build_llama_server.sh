#!/usr/bin/env bash
# Build llama.cpp's llama-server, the peer the serving benches compare against, from the llama.cpp
# vendored in llama-cpp-python's sdist on PyPI. Installs one static binary to
#   ${SLUICEGATE_CACHE_DIR:-~/.cache/sluicegate}/peers/bin/llama-server
# and does nothing when one that starts is there already (one whose shared libraries are gone is
# rebuilt). ~5 min on 2 cores; run it under `nice flock -s /tmp/sluicegate-quiet.lock` on a shared box.
#   bash bench/peers/build_llama_server.sh [llama-cpp-python version]
set -euo pipefail
version=${1:-0.3.36}
cache=${SLUICEGATE_CACHE_DIR:-$HOME/.cache/sluicegate}/peers
binary=$cache/bin/llama-server
# A ChatML template that renders tools (SmolLM2's own has none); the agent bench passes it to llama-server.
template=$cache/templates/Qwen-Qwen2.5-7B-Instruct.jinja
if [ -x "$binary" ] && "$binary" --version >/dev/null 2>&1 && [ -f "$template" ]; then echo "$binary"; exit 0; fi
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work"
tar xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
src=$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)
mkdir -p "$cache/templates"
cp "$src/models/templates/$(basename "$template")" "$template"
if [ -x "$binary" ] && "$binary" --version >/dev/null 2>&1; then echo "$binary"; exit 0; fi
flags=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF
       -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON)
if grep -q amx_tile /proc/cpuinfo; then
  # The native build enables AMX on these CPUs and crashes at start-up: AVX512 on, AMX off.
  flags+=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON
          -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)
else
  flags+=(-DGGML_NATIVE=ON)
fi
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S "$src" -B "$work/build" "${generator[@]}" "${flags[@]}" >/dev/null
cmake --build "$work/build" --target llama-server -j"$(nproc)"
mkdir -p "$cache/bin"
cp "$work/build/bin/llama-server" "$binary"
echo "$binary"
