# fish completion for guardctl.
#
# guardctl's own commands complete through guardctl (click's completion protocol); any
# other first word is a kubectl invocation, whose words complete through guardctl's own
# credentials, never your kubeconfig (`guardctl complete-kubectl -- WORDS…`, in the format of
# `kubectl __complete`): `guardctl get po<TAB>` offers pods, podtemplates, and `guardctl get
# pods web<TAB>` the pods a `get pods -o name` run through guardctl lists (when the policy
# allows that without a human).
#
# Use: copy to ~/.config/fish/completions/guardctl.fish

set -g __guardctl_commands approvals audit broker check complete-kubectl completion creds demo devserver doctor hook mask mcp ns replay rules sessions sh shim uninstall  # generated: scripts/gen_completions.py

function __guardctl_own --argument-names cur
    set -l words (commandline -opc)
    set -l response (env COMP_WORDS="$words $cur" COMP_CWORD=(count $words) \
        _GUARDCTL_COMPLETE=bash_complete guardctl 2>/dev/null)
    for line in $response
        set -l parts (string split -m 1 , -- $line)
        switch $parts[1]
            case plain
                echo $parts[2]
            case file
                __fish_complete_path $cur
            case dir
                __fish_complete_directories $cur
        end
    end
end

# cobra's directive bits (`:N` on the last line of the answer)
function __guardctl_kubectl_words --argument-names cur
    set -l args $argv[2..-1]
    set -l out (guardctl complete-kubectl -- $args $cur 2>/dev/null); or return 0
    set -l directive (string replace -r '^:' '' -- $out[-1])
    string match -qr '^[0-9]+$' -- $directive; or return 0
    test (math "bitand($directive, 1)") -eq 0; or return 0  # error
    set -l candidates
    for line in $out[1..-2]
        test -n "$line"; or continue
        string match -q -- '_activeHelp_*' $line; and continue
        set -a candidates $line
    end
    if test (math "bitand($directive, 8)") -ne 0  # filter files by these extensions
        for ext in $candidates
            __fish_complete_suffix $cur .$ext
        end
        return 0
    end
    if test (math "bitand($directive, 16)") -ne 0  # folders only
        __fish_complete_directories $cur
        return 0
    end
    # kubectl answers `--output=j` with `json`; fish wants the whole token
    set -l prefix (string match -r -- '^-[^=]*=' $cur; or echo)
    for candidate in $candidates
        echo "$prefix$candidate"
    end
    if test (count $candidates) -eq 0; and test (math "bitand($directive, 4)") -eq 0
        __fish_complete_path $cur
    end
end

function __guardctl_complete
    set -l words (commandline -opc)
    set -l cur (commandline -ct)
    set -e words[1]
    if test (count $words) -eq 0
        printf '%s\n' $__guardctl_commands kubectl
        __guardctl_kubectl_words $cur
    else if contains -- $words[1] $__guardctl_commands
        __guardctl_own $cur
    else if test "$words[1]" = kubectl
        __guardctl_kubectl_words $cur $words[2..-1]
    else
        __guardctl_kubectl_words $cur $words
    end
end

complete -c guardctl -f -a '(__guardctl_complete)'
