"""The review pipeline: diff, prompt, reviewers, consensus, publishing."""
