"""The finance back office (contract section 9): the float, the entries behind the
settlement's lines, card search and the staff statement, adjustments under four eyes.

Pure rules sit beside the use cases that read and write them: `rollforward` (the
float), `detail` (one CSV line per entry), `search` (cards by token prefix or rider
e-mail), `adjustments` (asked by one holder, approved by another); `office` bundles them
for the HTTP views and the commands.
"""
