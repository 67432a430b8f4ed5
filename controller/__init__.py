"""kubgp controller: turns Kubernetes objects into each node's desired BGP state."""
