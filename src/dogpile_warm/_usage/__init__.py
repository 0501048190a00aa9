"""What reads teach: hit and miss counts, usage patterns, warming figures."""
