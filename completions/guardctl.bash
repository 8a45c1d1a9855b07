# bash completion for guardctl.
#
# guardctl's own commands complete through guardctl (click's completion protocol); any
# other first word is a kubectl invocation, whose words complete through guardctl's own
# credentials, never your kubeconfig (`guardctl complete-kubectl -- WORDS…`, in the format of
# `kubectl __complete`): `guardctl get po<TAB>` offers pods, podtemplates, and `guardctl get
# pods web<TAB>` the pods a `get pods -o name` run through guardctl lists (when the policy
# allows that without a human).
#
# Use:  source /path/to/guardctl.bash   (in ~/.bashrc)

_guardctl_commands=(approvals audit broker check complete-kubectl completion creds demo devserver doctor hook mask mcp ns replay rules sessions sh shim uninstall)  # generated: scripts/gen_completions.py

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

# cobra's directive bits (`:N` on the last line of the answer)
_guardctl_kubectl_words() {
    local out directive line
    local -a candidates=()
    out=$(guardctl complete-kubectl -- "$@" "$cur" 2>/dev/null) || return 0
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
