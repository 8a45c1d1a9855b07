"""Running kubectl: the invocation path, credentials, private kubeconfigs, the child process."""
