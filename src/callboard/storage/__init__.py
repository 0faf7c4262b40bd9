"""Asset storage: the bytes of assets, namespaced and capped (the rows are the store's).

`names` validates what callers give and lays out object keys; `writer` streams one
object to its backend with its sha256 and size; `local` is the local-disk backend;
`gc` deletes objects no row refers to.
"""
