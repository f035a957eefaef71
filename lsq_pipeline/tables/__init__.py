"""The tables the steps share: the records' types, their statuses, the state and journal, the run history."""
