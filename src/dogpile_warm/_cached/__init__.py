"""One decorated function's cache: its read path and its refresh-ahead."""
