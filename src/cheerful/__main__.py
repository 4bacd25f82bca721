"""``python -m cheerful``: the command line."""

from cheerful.cli import main

if __name__ == "__main__":
    main()
