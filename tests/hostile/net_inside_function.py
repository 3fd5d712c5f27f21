# expect: contract
# limit: 5
# why: class Net is defined inside a function, not at module level
import torch
import torch.nn as nn


def supported_hyperparameters():
    return {"lr", "momentum", "dropout"}


def build():
  class Net(nn.Module):
      def __init__(self, in_shape, out_shape, prm, device):
          super().__init__()
          self.device = device
          self.conv = nn.Conv2d(in_shape[1], 8, 3, padding=1)
          self.head = nn.Linear(8, out_shape[0])

      def forward(self, x):
          return self.head(self.conv(x).mean((2, 3)))

      def train_setup(self, prm):
          self.to(self.device)
          self.criteria = (nn.CrossEntropyLoss(),)
          self.optimizer = torch.optim.SGD(self.parameters(), lr=prm["lr"], momentum=prm["momentum"])

      def learn(self, train_data):
          self.train()
          for inputs, labels in train_data:
              self.optimizer.zero_grad()
              self.criteria[0](self(inputs), labels).backward()
              self.optimizer.step()
