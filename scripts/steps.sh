# Step timing for the CI scripts, sourced: `source scripts/steps.sh`.
#
#   step NAME COMMAND...       runs COMMAND in the foreground and records its wall time
#   start NAME COMMAND...      starts COMMAND in the background, its output kept in a log
#   finish NAME                waits for a started step, prints its log, and fails if it failed
#   STEPS_ON_EXIT=COMMANDS     run at exit, after the background steps are stopped (clean-up)
#
# When the sourcing script exits, however it exits, each step's time and status is printed as a
# table (the background steps still running are stopped first), so the step that made a run
# slower is seen at once. A step that fails fails the script, as the command would under `set -e`.

_steps_dir=$(mktemp -d)
_steps_t0=$SECONDS
declare -A _steps_pid=() _steps_t=()

_steps_record() {  # NAME SECONDS STATUS
  printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$_steps_dir/times"
}

step() {
  local name=$1 t=$SECONDS rc=0
  shift
  echo "== step $name: $*"
  # started apart and waited for: a function run as `f || ...` would run with `set -e` off inside
  ("$@") &
  wait $! || rc=$?
  _steps_record "$name" $((SECONDS - t)) "$rc"
  return "$rc"
}

start() {
  local name=$1
  shift
  echo "== step $name (in the background): $*"
  _steps_t[$name]=$SECONDS
  # a process group of its own (job control on for this one job), so that stopping it stops
  # everything it started; a subshell, so that COMMAND may be a function of the script
  set -m
  (
    rc=0
    ("$@") &
    wait $! || rc=$?  # as in `step`: `"$@" || ...` would turn `set -e` off inside a function
    echo "$SECONDS" >"$_steps_dir/$name.end"  # when it ended, which may be long before `finish`
    exit "$rc"
  ) >"$_steps_dir/$name.log" 2>&1 &
  _steps_pid[$name]=$!
  set +m
}

finish() {
  local name=$1 rc=0
  wait "${_steps_pid[$name]}" || rc=$?
  unset "_steps_pid[$name]"
  echo "== step $name (ran in the background), its output:"
  cat "$_steps_dir/$name.log"
  _steps_record "$name" $(($(cat "$_steps_dir/$name.end" 2>/dev/null || echo "$SECONDS") - _steps_t[$name])) "$rc"
  return "$rc"
}

_steps_report() {
  local rc=$? name
  for name in "${!_steps_pid[@]}"; do
    kill -- -"${_steps_pid[$name]}" 2>/dev/null || true
    wait "${_steps_pid[$name]}" 2>/dev/null || true
    _steps_record "$name" $((SECONDS - _steps_t[$name])) "stopped"
  done
  eval "${STEPS_ON_EXIT:-}"
  echo
  echo "== step times (wall clock; background steps overlap the others)"
  if [ -s "$_steps_dir/times" ]; then
    awk -F'\t' '{ printf "%-12s %6d s  %5.1f min  %s\n", $1, $2, $2 / 60, ($3 == "0" ? "ok" : ($3 == "stopped" ? "stopped" : "failed (" $3 ")")) }' \
      "$_steps_dir/times"
  fi
  printf '%-12s %6d s  %5.1f min\n' total $((SECONDS - _steps_t0)) "$(awk "BEGIN { print ($SECONDS - $_steps_t0) / 60 }")"
  rm -rf "$_steps_dir"
  return "$rc"
}
trap _steps_report EXIT
