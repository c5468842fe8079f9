"""The "no action" answer: the class a model learns from still windows, and how the app reports it."""

#: Class name of the idle class (a person standing still, a resting sensor). A model trained
#: with a recipe's ``idle_class`` has it among its base classes; the engine reports a window
#: whose top answer it is as "no action", never as an action.
NO_ACTION = "no action"
