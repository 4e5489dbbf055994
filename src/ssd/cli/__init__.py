"""Command-line layer: parses arguments, calls the library, prints. Nothing below it prints or exits."""
