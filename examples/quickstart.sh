#!/usr/bin/env bash
# The first requests, with curl only: a chat reply, then a reply held to a JSON schema.
#
#     examples/quickstart.sh [BASE_URL]        (default http://127.0.0.1:8000/v1)
#
# MODEL defaults to the embedded model's name (what GET /v1/models lists; --served-model-name
# changes it). Set OPENAI_API_KEY when the server was started with --api-key.
set -euo pipefail
BASE_URL="${1:-http://127.0.0.1:8000/v1}"
MODEL="${MODEL:-SmolLM2-135M-Instruct}"
AUTH=(-H "Authorization: Bearer ${OPENAI_API_KEY:-unused}")

curl -sS --fail-with-body "$BASE_URL/models" "${AUTH[@]}"
echo

curl -sS --fail-with-body "$BASE_URL/chat/completions" "${AUTH[@]}" \
  -H "Content-Type: application/json" \
  -d '{
    "model": "'"$MODEL"'",
    "messages": [{"role": "user", "content": "Say hello in French."}],
    "max_tokens": 16,
    "temperature": 0
  }'
echo

curl -sS --fail-with-body "$BASE_URL/chat/completions" "${AUTH[@]}" \
  -H "Content-Type: application/json" \
  -d '{
    "model": "'"$MODEL"'",
    "messages": [{"role": "user", "content": "Name a city and its country."}],
    "max_tokens": 40,
    "temperature": 0,
    "response_format": {"type": "json_schema", "json_schema": {"name": "place", "strict": true, "schema": {
      "type": "object",
      "properties": {"city": {"type": "string", "maxLength": 20}, "country": {"type": "string", "maxLength": 20}},
      "required": ["city", "country"], "additionalProperties": false}}}
  }'
echo
