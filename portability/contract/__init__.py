"""The REST API's contract: the models that validate its input and describe its answers, and
the operations from which its routes and its OpenAPI document are both made (docs/api.md)."""
