"""The firewall: parse a shell line, normalize each kubectl call, decide it by the rules."""
