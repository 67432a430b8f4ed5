"""kubgp speaker: a small BGP-4 daemon with a declarative API. Knows nothing of Kubernetes."""
