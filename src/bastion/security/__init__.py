"""Small security primitives: sealing secrets at rest, password hashing, random handles."""
