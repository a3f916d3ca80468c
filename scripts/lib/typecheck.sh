# mypy sees the three source folders under their installed names (footfall.agent, ...) through a
# tree of symlinks in build/, because setuptools' editable finder is invisible to it.
typecheck() {
  local tree="$FOOTFALL_ROOT/build/typecheck/footfall"
  mkdir -p "$tree"
  local f
  for f in "$FOOTFALL_ROOT"/footfall/*.py; do ln -sfn "$f" "$tree/$(basename "$f")"; done
  ln -sfn "$FOOTFALL_ROOT/agent" "$tree/agent"
  ln -sfn "$FOOTFALL_ROOT/collector" "$tree/collector"
  ln -sfn "$FOOTFALL_ROOT/protocol" "$tree/protocol"
  (cd "$FOOTFALL_ROOT/build/typecheck" && mypy --config-file "$FOOTFALL_ROOT/pyproject.toml" --no-error-summary footfall)
}
