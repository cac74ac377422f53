"""The riders' side (contract section 7): accounts, linked cards, statements, lost and
replaced cards, and disputes with their 48-hour clock."""
