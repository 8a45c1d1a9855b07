#compdef guardctl
# zsh completion for guardctl.
#
# guardctl's own commands complete through guardctl (click's completion protocol); any
# other first word is a kubectl invocation, whose words complete through guardctl's own
# credentials, never your kubeconfig (`guardctl complete-kubectl -- WORDS…`, in the format of
# `kubectl __complete`): `guardctl get po<TAB>` offers pods, podtemplates, and `guardctl get
# pods web<TAB>` the pods a `get pods -o name` run through guardctl lists (when the policy
# allows that without a human).
#
# Use: put this file in a folder on $fpath as `_guardctl`, or `source` it after compinit.

_guardctl_commands=(approvals audit broker check complete-kubectl completion creds demo devserver doctor hook mask mcp ns replay rules sessions sh shim uninstall)  # generated: scripts/gen_completions.py

_guardctl_own() {
    local -a response plain described
    local type key descr
    response=("${(@f)$(COMP_WORDS="${words[*]}" COMP_CWORD=$((CURRENT - 1)) \
        _GUARDCTL_COMPLETE=zsh_complete guardctl 2>/dev/null)}")
    for type key descr in "${response[@]}"; do
        case $type in
            plain) if [[ $descr == _ ]]; then plain+=("$key"); else described+=("$key:$descr"); fi ;;
            file) _path_files -f ;;
            dir) _path_files -/ ;;
        esac
    done
    (( ${#described} )) && _describe -V guardctl-own described -U
    (( ${#plain} )) && compadd -U -V guardctl-plain -a plain
    return 0
}

# cobra's directive bits (`:N` on the last line of the answer)
_guardctl_kubectl_words() {
    local directive line cur=${(Q)PREFIX}
    local -a out described suffix
    out=("${(@f)$(guardctl complete-kubectl -- "$@" "$cur" 2>/dev/null)}")
    directive=${out[-1]#:}
    [[ $directive == <-> ]] || return 1
    (( directive & 1 )) && return 1  # error
    for line in "${(@)out[1,-2]}"; do
        [[ -z $line || $line == _activeHelp_* ]] && continue
        # _describe splits value from description at the first unescaped colon
        described+=("${${line%%$'\t'*}//:/\\:}${${(M)line#*$'\t'}:+:${line#*$'\t'}}")
    done
    if (( directive & 8 )); then  # filter files by these extensions
        _files -g "*.(${(j:|:)${described//\\:/:}})"
        return
    fi
    if (( directive & 16 )); then  # folders only
        _files -/
        return
    fi
    (( directive & 2 )) && suffix=(-S '')
    [[ $PREFIX == -*=* ]] && compset -P '*='  # kubectl answers `--output=j` with `json`
    if (( ${#described} )); then
        _describe -V kubectl described "${suffix[@]}"
    elif (( ! (directive & 4) )); then
        _files
    fi
}

_guardctl() {
    local -a before
    before=("${(@Q)words[2,CURRENT-1]}")
    local first=${before[1]-}
    if [[ -z $first ]]; then
        local -a own
        own=("${_guardctl_commands[@]}" kubectl)
        compadd -V guardctl-commands -a own
        _guardctl_kubectl_words
    elif (( ${_guardctl_commands[(Ie)$first]} )); then
        _guardctl_own
    elif [[ $first == kubectl ]]; then
        _guardctl_kubectl_words "${(@)before[2,-1]}"
    else
        _guardctl_kubectl_words "${before[@]}"
    fi
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _guardctl "$@"
else
    compdef _guardctl guardctl
fi
