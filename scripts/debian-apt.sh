# Shared by kernel-check-setup.sh, kernel-build.sh and window-module.sh (sourced,
# not run): the machine's Debian apt entry and a private apt state for
# trixie-backports under $KC/apt. The caller defines KC, say and die.

# shellcheck disable=SC1091
CODENAME=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[[ -n $CODENAME ]] || die "cannot read VERSION_CODENAME from /etc/os-release"

# "URI KEYRING" of the machine's main Debian entry (deb822, then one-line).
debian_uri() {
    local uri="" keyring="" f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        uri=$(awk 'BEGIN{RS="";FS="\n"} /(^|\n)Suites:[^\n]*'"$CODENAME"'([[:space:]]|\n|$)/ && /URIs:[^\n]*debian([[:space:]\/]|\n|$)/ {
                for (i = 1; i <= NF; i++) if ($i ~ /^URIs:/) { sub(/^URIs:[[:space:]]*/, "", $i); split($i, u, " "); print u[1]; exit } }' "$f")
        keyring=$(awk 'BEGIN{RS="";FS="\n"} /(^|\n)Suites:[^\n]*'"$CODENAME"'([[:space:]]|\n|$)/ && /URIs:[^\n]*debian([[:space:]\/]|\n|$)/ {
                for (i = 1; i <= NF; i++) if ($i ~ /^Signed-By:/) { sub(/^Signed-By:[[:space:]]*/, "", $i); print $i; exit } }' "$f")
        [[ -n $uri ]] && break
    done
    if [[ -z $uri && -f /etc/apt/sources.list ]]; then
        uri=$(awk -v cn="$CODENAME" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/) { if ($(i+1) == cn) { print $i; exit } else break } }' /etc/apt/sources.list)
    fi
    [[ -n $uri ]] || die "no main Debian '${CODENAME}' apt source found to derive trixie-backports from"
    [[ -n $keyring ]] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    printf '%s %s\n' "${uri%/}" "$keyring"
}

PAPT="$KC/apt"
PAPT_OPTS=()

# apt-get on the machine's own apt state, one caller at a time: the scripts may
# run side by side (parallel tests), and apt-get fails at once on a held lock.
apt_get() {
    flock -w 1800 /var/lock/ptediff-apt.lock apt-get "$@"
}

# PAPT_OPTS: apt options that use the private state (which must exist).
papt_set_opts() {
    [[ -f $PAPT/sources.list ]] || die "no private apt state in $PAPT: run scripts/kernel-check-setup.sh first"
    PAPT_OPTS=(-o "Dir::Etc::SourceList=$PAPT/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$PAPT/lists" -o "Dir::Cache=$PAPT/cache" -o APT::Sandbox::User=root)
}

# Create the private apt state for trixie-backports (once per process) and update it.
private_apt_init() {
    [[ ${#PAPT_OPTS[@]} -eq 0 ]] || return 0
    local uri keyring
    read -r uri keyring <<<"$(debian_uri)"
    mkdir -p "$PAPT/lists/partial" "$PAPT/cache/archives/partial"
    printf 'deb [signed-by=%s] %s trixie-backports main\n' "$keyring" "$uri" >"$PAPT/sources.list"
    papt_set_opts
    say "private apt state for trixie-backports ($uri) in $PAPT; apt-get update"
    apt-get "${PAPT_OPTS[@]}" update -qq >&2
}

# require_commands CMD:PACKAGE...: every external command a script calls, checked
# up front. Missing ones are installed from their Debian package when running as
# root (one apt-get update first), otherwise the script stops naming the package.
require_commands() {
    local spec cmd pkg pkgs=() cmds=()
    for spec in "$@"; do
        cmd=${spec%%:*}
        pkg=${spec#*:}
        command -v "$cmd" >/dev/null 2>&1 && continue
        cmds+=("$cmd")
        [[ " ${pkgs[*]} " == *" $pkg "* ]] || pkgs+=("$pkg")
    done
    [[ ${#pkgs[@]} -eq 0 ]] && return 0
    [[ $(id -u) -eq 0 ]] || die "missing commands: ${cmds[*]} (apt-get install ${pkgs[*]}, or run as root)"
    say "installing ${pkgs[*]} (for ${cmds[*]})"
    apt_get update -qq >&2
    apt_get install -y -q "${pkgs[@]}" >&2
    for spec in "$@"; do
        cmd=${spec%%:*}
        command -v "$cmd" >/dev/null 2>&1 || die "$cmd still missing after apt-get install ${spec#*:}"
    done
}
