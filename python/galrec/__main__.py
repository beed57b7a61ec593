"""``python -m galrec`` runs the CLI (this is also what ``torchrun -m galrec`` starts)."""

from galrec.cli import main

if __name__ == "__main__":
    main()
