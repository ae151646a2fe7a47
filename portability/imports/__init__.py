"""Import: objects from another provider into a user's bucket, through the copy engine."""
