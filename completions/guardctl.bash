# bash completion for guardctl.
#
# guardctl's own commands complete through guardctl (click's completion protocol); any
# other first word is a kubectl invocation, so the words complete as kubectl completes
# them (`kubectl __complete WORDS…`), e.g. `guardctl get po<TAB>` offers pods, podtemplates.
#
# Use:  source /path/to/guardctl.bash   (in ~/.bashrc)

_guardctl_commands=(approvals audit broker check creds demo devserver doctor hook mask mcp replay rules sessions sh shim)  # generated: scripts/gen_completions.py

# The real kubectl, found as guardctl finds it: $GUARDCTL_KUBECTL, else the first kubectl on
# PATH that is not a guardctl shim. Asking a shim would put every TAB through the policy.
_guardctl_real_kubectl() {
    if [[ -n ${GUARDCTL_KUBECTL-} ]]; then
        printf '%s\n' "$GUARDCTL_KUBECTL"
        return 0
    fi
    local dir candidate real
    local -a dirs
    IFS=: read -r -a dirs <<< "$PATH"
    for dir in "${dirs[@]}"; do
        candidate=$dir/kubectl
        [[ $dir == /* && -f $candidate && -x $candidate ]] || continue
        real=$(readlink -f -- "$candidate") || continue
        [[ ${real##*/} == guardctl* ]] && continue
        head -c 4096 -- "$real" 2>/dev/null | LC_ALL=C grep -aqi guardctl && continue
        printf '%s\n' "$candidate"
        return 0
    done
    return 1
}

# COMPREPLY replaces bash's current word, which COMP_WORDBREAKS (`=`, `:`) may have cut
# shorter than ours: drop that part of our word from candidates that repeat it.
_guardctl_reply() {
    local candidate cut=${cur%"${cur##*[=:]}"}
    for candidate in "$@"; do
        COMPREPLY+=("${candidate#"$cut"}")
    done
}

_guardctl_own() {
    local response line
    response=$(COMP_WORDS="${words[*]} $cur" COMP_CWORD=${#words[@]} \
        _GUARDCTL_COMPLETE=bash_complete guardctl 2>/dev/null) || return 0
    while IFS= read -r line; do
        case ${line%%,*} in
            plain) _guardctl_reply "${line#*,}" ;;
            file) compopt -o default ;;
            dir) compopt -o dirnames ;;
        esac
    done <<< "$response"
}

# cobra's directive bits (`:N` on the last line of `kubectl __complete`)
_guardctl_kubectl_words() {
    local kubectl out directive line
    local -a candidates=()
    kubectl=$(_guardctl_real_kubectl) || return 0
    out=$("$kubectl" __complete "$@" "$cur" 2>/dev/null) || return 0
    directive=${out##*$'\n'}
    directive=${directive#:}
    [[ $directive =~ ^[0-9]+$ ]] || return 0
    (( directive & 1 )) && return 0  # error
    while IFS= read -r line; do
        [[ -z $line || $line == :* || $line == _activeHelp_* ]] && continue
        candidates+=("${line%%$'\t'*}")
    done <<< "$out"
    if (( directive & 8 )); then  # filter files by these extensions
        local ext
        for ext in "${candidates[@]}"; do
            mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY < <(compgen -f -X "!*.$ext" -- "$cur")
        done
        mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY < <(compgen -d -- "$cur")
        compopt -o filenames
        return 0
    fi
    if (( directive & 16 )); then  # folders only
        compopt -o dirnames
        return 0
    fi
    local -a matching=()
    for line in "${candidates[@]}"; do
        [[ $line == "$cur"* || $cur == -*=* ]] && matching+=("$line")
    done
    _guardctl_reply "${matching[@]}"
    (( directive & 2 )) && compopt -o nospace
    (( ${#COMPREPLY[@]} == 0 && !(directive & 4) )) && compopt -o default
    return 0
}

_guardctl() {
    # split what is left of the cursor on blanks ourselves: COMP_WORDS is also cut at `=`/`:`
    local line=${COMP_LINE:0:COMP_POINT} cur=""
    local -a words
    read -r -a words <<< "$line"
    if [[ $line != *[[:blank:]] && ${#words[@]} -gt 0 ]]; then
        cur=${words[-1]}
        unset 'words[-1]'
    fi
    COMPREPLY=()
    local first=${words[1]-}
    if [[ -z $first ]]; then
        mapfile -t COMPREPLY < <(compgen -W "${_guardctl_commands[*]} kubectl" -- "$cur")
        _guardctl_kubectl_words
    elif [[ " ${_guardctl_commands[*]} " == *" $first "* ]]; then
        _guardctl_own
    elif [[ $first == kubectl ]]; then
        _guardctl_kubectl_words "${words[@]:2}"
    else
        _guardctl_kubectl_words "${words[@]:1}"
    fi
    return 0
}

complete -o nosort -F _guardctl guardctl
