"""The controller's Kubernetes glue: the only package that imports kopf and kubernetes (an
import-linter contract in pyproject.toml keeps it so). Everything it drives lives outside."""
