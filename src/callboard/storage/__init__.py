"""Asset storage: the bytes of assets, namespaced and capped (the rows are the store's).

What is the same wherever the bytes go sits above one interface: `names` (namespaces,
the object-key layout, checks of filenames and content types), `writer`
(`AssetStorage` as callers see it, and `ObjectWriter`, which streams one object with
its cap check per chunk, sha256, size and cleanup of a failed write) and `gc`
(deletes objects no row refers to). Below it, `backend` defines what a backend must
do, and `local` is the backend of a directory on the local disk (with the
`AssetStorage` a node builds on it); another backend is one more module beside
`local`.
"""
