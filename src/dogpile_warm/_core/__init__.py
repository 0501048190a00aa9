"""The core: entries, keys, tags, the store over a dogpile region, locks, backend health."""
