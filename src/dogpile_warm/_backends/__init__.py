"""What dogpile_warm adds to or knows about particular dogpile backends."""
